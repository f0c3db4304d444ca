"""Log out from the header, on a desktop and on a phone (behind Menu): the button is on screen, it ends the session,
and the pages behind the login are closed again (Back included)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)], ids=["desktop", "phone"])
def test_log_out_from_the_header(live_server, browser, artifacts, database_url, width, height):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(live_server + "/login")
        page.get_by_label("Email").fill("agent@example.com")
        page.get_by_label("Password").fill(factories.PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Board")).to_be_visible()

        button = page.locator("header.topbar").get_by_role("button", name="Log out")
        if width < 640:  # a phone: the account sits in the folded menu, one tap away
            expect(button).to_be_hidden()
            page.locator("header.topbar").get_by_text("Menu", exact=True).click()
        expect(button).to_be_in_viewport()  # on a phone too, without scrolling sideways
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        page.screenshot(path=str(artifacts / f"logout-{width}-{database_url.split(':')[0].split('+')[0]}.png"))
        button.click()
        expect(page).to_have_url(live_server + "/login")
        expect(page.locator(".flash-info")).to_have_text("You are logged out.")

        page.go_back()
        page.reload()
        expect(page).to_have_url(live_server + "/login?next=%2Fboard")
        page.goto(live_server + "/logout")  # nothing left to log out of
        expect(page).to_have_url(live_server + "/login")
    finally:
        context.close()


def test_get_logout_asks_first(live_server, page):
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill("agent@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server + "/logout")  # as from a link or a bookmark: still logged in
    expect(page.get_by_role("heading", name="Log out?")).to_be_visible()
    page.goto(live_server + "/board")
    expect(page.get_by_role("heading", name="Board")).to_be_visible()
    page.goto(live_server + "/logout")
    page.locator("main").get_by_role("button", name="Log out").click()
    expect(page).to_have_url(live_server + "/login")
    page.goto(live_server + "/board")
    expect(page).to_have_url(live_server + "/login?next=%2Fboard")
