"""The board in a real browser: drag and drop with the mouse and the keyboard, the same moves without
JavaScript, a concurrent change, filters kept in the URL, the cap with "N more", and Assign to me."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.tickets import service
from itsm.tickets.models import Ticket
from tests import factories

pytestmark = pytest.mark.browser


def log_in(page, live_server, path="/board", email="agent@example.com"):
    page.goto(live_server + "/login?next=" + path.replace("?", "%3F").replace("&", "%26").replace("=", "%3D"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Board")).to_be_visible()


def lane(page, name):
    return page.locator(f"section.lane[data-column='{name}']")


def card(page, ticket_id):
    return page.locator(f"#card-{ticket_id}")


def column_of(app, ticket_id) -> str:
    with app.app_context():
        return db.session.get(Ticket, ticket_id).column.name


def mark_page(page):
    """A flag that a full reload would wipe out."""
    page.evaluate("window.__sameDocument = true")


def assert_same_page(page):
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


@pytest.fixture
def tickets(app):
    with app.app_context():
        return [factories.make_ticket(f"Laptop {i}", priority=2).id for i in range(3)]


def test_drag_a_card_to_another_column_with_the_mouse(app, live_server, page, tickets):
    log_in(page, live_server)
    mark_page(page)
    expect(lane(page, "New").locator(".count")).to_have_text("3")
    card(page, tickets[0]).drag_to(lane(page, "Waiting"))
    expect(lane(page, "Waiting").locator(f"#card-{tickets[0]}")).to_be_visible()
    expect(page.locator("#board-status")).to_have_text(f"Ticket #{tickets[0]} moved to Waiting.")
    expect(lane(page, "New").locator(".count")).to_have_text("2")
    expect(lane(page, "Waiting").locator(".count")).to_have_text("1")
    assert_same_page(page)
    assert column_of(app, tickets[0]) == "Waiting"
    # The redrawn card carries the new version: a second move of it is not taken for a conflict.
    card(page, tickets[0]).drag_to(lane(page, "Done"))
    expect(lane(page, "Done").locator(f"#card-{tickets[0]}")).to_be_visible()
    assert column_of(app, tickets[0]) == "Done"


def test_move_a_card_with_the_keyboard(app, live_server, page, tickets):
    log_in(page, live_server)
    mark_page(page)
    page.locator(f"#card-{tickets[1]} a.title").focus()
    page.keyboard.press("Shift+Tab")  # the card itself is focusable, before its link
    expect(card(page, tickets[1])).to_be_focused()
    page.keyboard.press("Space")
    expect(card(page, tickets[1])).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#board-status")).to_have_text(f"Drop #{tickets[1]} in Waiting?")
    expect(lane(page, "Waiting")).to_have_class(re.compile(r"\bdrop-target\b"))
    page.keyboard.press("Space")
    expect(lane(page, "Waiting").locator(f"#card-{tickets[1]}")).to_be_focused()  # focus follows the card
    expect(page.locator("#board-status")).to_have_text(f"Ticket #{tickets[1]} moved to Waiting.")
    assert_same_page(page)
    assert column_of(app, tickets[1]) == "Waiting"
    # Escape puts it down where it was.
    page.keyboard.press("Space")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Escape")
    expect(page.locator("#board-status")).to_have_text("Move cancelled.")
    assert column_of(app, tickets[1]) == "Waiting"


def test_the_move_menu_works_without_javascript(app, live_server, browser, tickets):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        log_in(page, live_server, "/board?priority=normal")
        target = card(page, tickets[2])
        target.locator("summary", has_text="Move").click()
        target.get_by_role("button", name="In progress").click()
        expect(page.locator(".flash-success")).to_have_text(f"Ticket #{tickets[2]} moved to In progress.")
        expect(page).to_have_url(live_server + "/board?priority=normal")  # back to the same filtered board
        expect(lane(page, "In progress").locator(f"#card-{tickets[2]}")).to_be_visible()
        assert column_of(app, tickets[2]) == "In progress"
    finally:
        context.close()


def test_a_concurrent_change_is_reported_and_the_card_shows_the_truth(app, live_server, page, tickets):
    log_in(page, live_server)
    mark_page(page)
    with app.app_context():  # someone else moves the card while this board is open
        ticket = db.session.get(Ticket, tickets[0])
        service.move_ticket(ticket, factories.column("In progress"), factories.user("admin@example.com"))
        db.session.commit()
    card(page, tickets[0]).drag_to(lane(page, "Done"))
    status = page.locator("#board-status")
    expect(status).to_contain_text(f"Ticket #{tickets[0]} changed after you loaded the page: "
                                   "Ada Admin moved it to In progress at ")
    expect(status).to_have_class(re.compile(r"\bflash-error\b"))
    expect(lane(page, "In progress").locator(f"#card-{tickets[0]}")).to_be_visible()
    expect(lane(page, "New").locator(".count")).to_have_text("2")
    expect(lane(page, "Done").locator(f"#card-{tickets[0]}")).to_have_count(0)
    assert_same_page(page)
    assert column_of(app, tickets[0]) == "In progress"


def test_filters_are_kept_in_the_url(app, live_server, page, ids):
    with app.app_context():
        factories.make_ticket("VPN drops hourly", priority=4, category="Network", assignee_id=ids.agent)
        factories.make_ticket("VPN slow", priority=2, category="Network")
        factories.make_ticket("Mouse broken", priority=4, category="Hardware", assignee_id=ids.agent)
    log_in(page, live_server)
    page.get_by_label("Search").fill("vpn")
    page.get_by_label("Assignee").select_option(label="Me")
    page.get_by_label("Priority").select_option(label="Urgent")
    page.get_by_label("Category").fill("network")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/board\?q=vpn&assignee=me&priority=urgent&category=network$"))
    expect(page.locator(".ticket-card")).to_have_count(1)
    expect(page.locator(".ticket-card")).to_contain_text("VPN drops hourly")
    page.reload()
    expect(page.get_by_label("Search")).to_have_value("vpn")
    expect(page.get_by_label("Category")).to_have_value("network")
    expect(page.locator(".ticket-card")).to_have_count(1)
    page.get_by_role("link", name="Reset").click()
    expect(page.locator(".ticket-card")).to_have_count(3)


def test_cap_per_column_and_n_more_opens_the_filtered_list(app, live_server, page):
    app.config["BOARD_CARDS_PER_COLUMN"] = 3
    with app.app_context():
        for i in range(5):
            ticket = factories.make_ticket(f"Toner {i}", priority=3)
            ticket.created_at = utcnow() - timedelta(days=10 - i)
        factories.make_ticket("Toner urgent", priority=4)
        factories.make_ticket("Other thing", priority=4)
        db.session.commit()
    log_in(page, live_server, "/board?q=toner")
    new = lane(page, "New")
    expect(new.locator(".count")).to_have_text("6")
    expect(new.locator(".ticket-card .title")).to_have_text([re.compile("Toner urgent"), re.compile("Toner 0"),
                                                             re.compile("Toner 1")])
    expect(page.locator(".board-order")).to_contain_text("most urgent first, then oldest first; up to 3 per column")
    new.get_by_role("link", name="3 more in the list →").click()
    expect(page).to_have_url(re.compile(r"/tickets\?.*column=\d+"))
    assert "q=toner" in page.url and "sort=board" in page.url
    expect(page.locator("table.tickets tbody tr")).to_have_count(6)
    expect(page.locator("table.tickets tbody tr").nth(3)).to_contain_text("Toner 2")  # the board's order, continued


def test_assign_to_me_on_a_card_and_on_the_ticket_page(app, live_server, page, tickets):
    log_in(page, live_server)
    mark_page(page)
    target = card(page, tickets[0])
    target.get_by_role("button", name="Assign to me").click()
    expect(card(page, tickets[0]).locator(".assignee")).to_have_text("Alan Agent")
    expect(card(page, tickets[0]).get_by_role("button", name="Assign to me")).to_have_count(0)
    assert_same_page(page)
    page.goto(f"{live_server}/tickets/{tickets[1]}")
    page.get_by_role("button", name="Assign to me").click()
    expect(page.locator(".flash-success")).to_have_text(f"Ticket #{tickets[1]} is assigned to you.")
    expect(page.locator(".side-col")).to_contain_text("Alan Agent")
    with app.app_context():
        assert {db.session.get(Ticket, t).assignee_id for t in tickets[:2]} == {factories.user("agent@example.com").id}


def test_board_screenshot(app, live_server, page, artifacts, database_url, ids):
    names = ("Printer on floor 2 jams", "VPN drops every hour", "New starter needs a laptop", "Outlook keeps asking "
             "for the password", "Projector in room 4 flickers", "Badge reader at reception", "Shared drive is full")
    with app.app_context():
        for i in range(40):
            ticket = factories.make_ticket(f"{names[i % len(names)]} ({i})", priority=1 + (i // 4) % 4,
                                           column_name=("New", "In progress", "Waiting", "Done")[i % 4],
                                           assignee_id=(ids.agent, ids.admin, None)[i % 3])
            ticket.created_at = utcnow() - timedelta(hours=7 * i + 1)
        db.session.commit()
    log_in(page, live_server)
    expect(page.locator(".ticket-card")).to_have_count(40)
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2600, height  # 10 cards a column, one compact menu each
    if database_url.startswith("sqlite"):
        page.screenshot(path=str(artifacts / "board.png"), full_page=True)
