"""The ticket sidebar keeps a long requester address readable: broken before the "@", never mid-word."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories

pytestmark = pytest.mark.browser

LONG = "margarethe.vonundzu-schleswigholstein@facilities-management.example-corporation.com"


@pytest.mark.parametrize("width", [1400, 390])
def test_a_long_requester_address_is_cut_with_an_ellipsis_not_wrapped_mid_word(
        app, live_server, page, artifacts, database_url, width):
    with app.app_context():
        ticket_id = factories.make_ticket("Door badge broken", requester_email=LONG).id
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(live_server + "/login")
    page.get_by_label("Email").fill("agent@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server}/tickets/{ticket_id}")
    address = page.locator(".side-col .address")
    expect(address).to_have_attribute("title", LONG)
    parts = address.locator(".part")
    local, _, domain = LONG.partition("@")
    expect(parts).to_have_text([local, "@" + domain])
    side = page.locator(".side-col").bounding_box()
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.side-col dd')).lineHeight)")
    for i in range(2):
        box = parts.nth(i).bounding_box()
        assert box["x"] + box["width"] <= side["x"] + side["width"] + 0.5  # inside the sidebar
        assert box["height"] < 1.5 * line  # one line each: no break inside a word
        assert parts.nth(i).evaluate("e => e.scrollWidth > e.clientWidth")  # cut, with the ellipsis
    name = f"ticket-sidebar-{width}-{database_url.split(':')[0]}.png"
    page.locator(".side-col").screenshot(path=str(artifacts / name))
