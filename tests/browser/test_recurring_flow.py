"""Setting up a recurring ticket in the browser: the controls, the live preview, the template page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.browser


def test_recurring_ticket_with_live_preview(live_server, page, artifacts, database_url):
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill("agent@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server + "/tickets/new")

    body = page.locator(".recurrence-body")
    expect(body).to_be_hidden()  # only once the ticket is set to repeat
    page.get_by_label("Title").fill("Monthly licence review {month}")
    page.get_by_label("Repeat this ticket on a schedule").check()
    expect(body).to_be_visible()
    expect(page.locator(".for-monthly")).to_be_hidden()  # weekly is the default unit

    page.get_by_label("Unit").select_option("monthly")
    expect(page.locator(".for-weekly")).to_be_hidden()
    page.get_by_label("A weekday of the month").check()
    page.get_by_label("Which").select_option(label="Last")
    page.get_by_label("Weekday", exact=True).select_option(label="Friday")
    page.get_by_label("Next occurrence").fill("2027-01-01T10:30")
    page.get_by_label("Time zone").fill("America/New_York")
    preview = page.locator("#recurrence-preview time")
    # The preview follows the rule as it is edited, without a page load.
    expect(preview).to_have_count(5)
    expect(preview.first).to_have_text("Fri 2027-01-29 10:30 America/New_York")
    expect(preview.nth(2)).to_have_text("Fri 2027-03-26 10:30 America/New_York")  # after the DST change, still 10:30

    page.get_by_label("Time zone").fill("Atlantis/Capital")
    expect(page.locator("#recurrence-preview")).to_contain_text("Unknown time zone")
    page.get_by_label("Time zone").fill("America/New_York")
    # Leave the field as a person would: its open suggestion list would otherwise take the next click
    # whenever the button below happens to be on screen.
    page.get_by_label("Time zone").press("Tab")
    expect(preview).to_have_count(5)
    page.screenshot(path=str(artifacts / f"recurring-form-{database_url.split(':')[0]}.png"), full_page=True)

    page.get_by_role("button", name="Create ticket").click()
    expect(page.locator(".flash-success")).to_contain_text("Recurring ticket")
    expect(page.locator(".card strong").first).to_have_text(
        "Every month on the last Friday at 10:30 (America/New_York)")
    expect(page.locator(".occurrences time").first).to_have_text("Fri 2027-01-29 10:30 America/New_York")
    expect(page.get_by_text("No tickets yet.")).to_be_visible()
    page.get_by_role("button", name="Pause").click()
    expect(page.locator(".flash-success")).to_contain_text("paused")
    expect(page.locator("h1 .badge.paused")).to_be_visible()


def test_choices_left_behind_by_a_unit_change_never_block_the_form(live_server, page, artifacts, database_url):
    """Mon and Thu ticked under weekly, then monthly chosen: the hidden checkboxes neither show up in the
    preview's complaints nor stop the save. The end fields show only for the matching Ends option."""
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill("agent@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server + "/tickets/new")
    page.get_by_label("Title").fill("Monthly report")
    page.get_by_label("Repeat this ticket on a schedule").check()
    page.get_by_label("Next occurrence").fill("2027-03-04T09:00")
    page.get_by_label("Time zone").fill("UTC")
    page.get_by_label("Time zone").press("Tab")
    page.get_by_label("Monday", exact=True).check()
    page.get_by_label("Thursday", exact=True).check()
    preview = page.locator("#recurrence-preview time")
    expect(preview.first).to_have_text("Thu 2027-03-04 09:00 UTC")
    expect(preview.nth(1)).to_have_text("Mon 2027-03-08 09:00 UTC")

    page.get_by_label("Unit").select_option("monthly")
    expect(page.locator(".for-weekly")).to_be_hidden()
    expect(preview.nth(1)).to_have_text("Sun 2027-04-04 09:00 UTC")  # the 4th of each month
    expect(page.locator("#recurrence-preview")).not_to_contain_text("weekly")

    end_date, occurrences = page.get_by_label("End date"), page.get_by_label("Occurrences", exact=True)
    expect(end_date).to_be_hidden()
    expect(occurrences).to_be_hidden()  # "Never" is chosen
    page.get_by_label("On a date").check()
    expect(end_date).to_be_visible()
    expect(occurrences).to_be_hidden()
    page.get_by_label("After a number of occurrences").check()
    expect(occurrences).to_be_visible()
    expect(end_date).to_be_hidden()
    occurrences.fill("3")
    occurrences.press("Tab")
    expect(preview).to_have_count(3)
    page.screenshot(path=str(artifacts / f"recurring-form-unit-change-{database_url.split(':')[0]}.png"),
                    full_page=True)

    page.get_by_role("button", name="Create ticket").click()
    expect(page.locator(".flash-success")).to_contain_text("Recurring ticket")
    expect(page.locator(".card strong").first).to_have_text("Every month at 09:00 (UTC), 3 times in all")
