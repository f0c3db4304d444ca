"""A user picks a time zone on the profile page and then reads the desk's times in it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories

pytestmark = pytest.mark.browser


def test_a_chosen_zone_is_used_on_every_page(app, live_server, page, artifacts, database_url):
    with app.app_context():
        ticket_id = factories.make_ticket("Printer on fire").id
        moment = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
        db.session.execute(sa.update(Ticket).where(Ticket.id == ticket_id).values(created_at=moment,
                                                                                 updated_at=moment))
        db.session.commit()
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill("agent@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Board")).to_be_visible()

    page.goto(live_server + f"/tickets/{ticket_id}")
    expect(page.locator("footer")).to_have_text("itsm · times in UTC")
    expect(page.locator("main")).to_contain_text("2025-01-15 12:00")

    page.locator("header.topbar").get_by_role("link", name="Alan Agent").click()
    page.get_by_label("Display name").fill("Alan in Tokyo")
    page.get_by_label("Time zone").select_option("Asia/Tokyo")
    page.locator("#details").get_by_role("button", name="Save").click()
    expect(page.locator(".flash-success")).to_have_text("Profile saved. Times are shown in Asia/Tokyo.")
    expect(page.locator("header.topbar")).to_contain_text("Alan in Tokyo")

    page.goto(live_server + f"/tickets/{ticket_id}")
    expect(page.locator("footer")).to_have_text("itsm · times in Asia/Tokyo")
    created = page.locator("dt", has_text="Created").locator("xpath=following-sibling::dd[1]")
    expect(created).to_have_text("2025-01-15 21:00")
    page.screenshot(path=str(artifacts / f"time-zone-{database_url.split(':')[0].split('+')[0]}.png"))
