"""A person's first minutes: log in, create a ticket, finish it on the board, find it in the list."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.browser


def test_create_move_to_done_and_find_in_list(live_server, page, artifacts, database_url):
    page.goto(live_server + "/board")
    expect(page).to_have_url(live_server + "/login?next=%2Fboard")
    page.get_by_label("Email").fill("agent@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Board")).to_be_visible()

    page.get_by_role("link", name="New ticket").first.click()
    page.get_by_role("button", name="Create ticket").click()  # empty title: error next to the field
    expect(page.locator("#title-error")).to_have_text("This field is required.")
    page.get_by_label("Title").fill("Projector in room 4 flickers")
    page.get_by_label("Description").fill("Started after the firmware update.")
    page.get_by_label("Priority").select_option(label="High")
    page.get_by_label("Requester email").fill("teacher@example.com")
    page.get_by_role("button", name="Create ticket").click()
    expect(page.locator(".flash-success")).to_contain_text("created")
    expect(page.get_by_role("heading", name="Projector in room 4 flickers")).to_be_visible()

    page.get_by_role("link", name="Board", exact=True).click()
    card = page.locator(".ticket-card", has_text="Projector in room 4 flickers")
    expect(page.locator("section.lane[data-column='New']").locator(".ticket-card",
                                                                    has_text="Projector")).to_have_count(1)
    card.locator("summary", has_text="Move").click()
    card.get_by_role("button", name="Done").click()
    expect(page.locator(".flash-success")).to_contain_text("moved to Done")
    done_lane = page.locator("section.lane[data-column='Done']")
    expect(done_lane.locator(".ticket-card", has_text="Projector in room 4 flickers")).to_have_count(1)
    page.screenshot(path=str(artifacts / f"board-{database_url.split(':')[0].split('+')[0]}.png"), full_page=True)

    page.get_by_role("link", name="Tickets", exact=True).click()
    row = page.locator("table.tickets tbody tr", has_text="Projector in room 4 flickers")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Done")
    expect(row).to_contain_text("high")
    page.screenshot(path=str(artifacts / f"list-{database_url.split(':')[0].split('+')[0]}.png"), full_page=True)
