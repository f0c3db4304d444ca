"""The pages people look at most, as they render, at desktop and phone sizes: a ticket with its history
and the automation dashboard after jobs ran. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from itsm.extensions import db
from itsm.tickets import service as tickets
from tests import factories

pytestmark = pytest.mark.browser
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.mark.parametrize("size", SIZES)
def test_a_ticket_and_the_automation_page(app, live_server, browser, artifacts, database_url, size):
    with app.app_context():
        ticket = factories.make_ticket("Projector in room 4 flickers",
                                       description="Started after the firmware update.")
        tickets.add_comment(db.session.merge(ticket), None, "Replaced the HDMI cable; still flickers.")
        db.session.commit()
        ticket_id = ticket.id
        jobtasks_ran(app)
    context = browser.new_context(viewport=SIZES[size])
    page = context.new_page()
    page.set_default_timeout(10_000)
    kind = database_url.split(":")[0].split("+")[0]
    try:
        page.goto(live_server + "/login")
        page.get_by_label("Email").fill("admin@example.com")
        page.get_by_label("Password").fill(factories.PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{live_server}/tickets/{ticket_id}")
        expect(page.get_by_role("heading", name="Projector in room 4 flickers")).to_be_visible()
        expect(page.get_by_text("Replaced the HDMI cable")).to_be_visible()
        page.screenshot(path=str(artifacts / f"ticket-{size}-{kind}.png"), full_page=True)
        page.goto(live_server + "/admin/automation")
        expect(page.get_by_role("heading", name="Automation")).to_be_visible()
        page.screenshot(path=str(artifacts / f"automation-{size}-{kind}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        context.close()


def jobtasks_ran(app) -> None:
    """A few audited runs, inline, so the dashboard has runs, durations and a failure to show."""
    from itsm.schedules.catalog import entries
    from itsm.schedules.sync import sync
    from jobs import registry

    registry.load(app.config["JOBS_IMPORTS"])
    sync(entries())  # the periodic tasks a deployment has
    db.session.commit()
    ping = registry.get("diagnostics.ping")
    for _ in range(3):
        ping.apply()
