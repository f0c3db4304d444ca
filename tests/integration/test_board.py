"""The board: lanes, card order, filters in the URL, the cap, moving and assigning with and without JavaScript."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from itsm.board import cards
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories

JSON = {"Accept": "application/json"}


def lane_of(html: str, title: str) -> str:
    """Name of the lane whose section holds the card with this title."""
    for match in re.finditer(r'<section class="lane[^"]*" aria-label="([^"]+)".*?</section>', html, re.S):
        if title in match.group(0):
            return match.group(1)
    raise AssertionError(f"{title} not on the board")


def titles_in(html: str, lane: str) -> list[str]:
    section = re.search(rf'<section class="lane[^"]*" aria-label="{lane}".*?</section>', html, re.S).group(0)
    return re.findall(r'<span class="muted">#\d+</span> ([^<]+)</a>', section)


def make(title: str, days_old: float = 0, **fields) -> int:
    ticket = factories.make_ticket(title, **fields)
    ticket.created_at = utcnow() - timedelta(days=days_old)
    db.session.commit()
    return ticket.id


def seen_of(app, ticket_id: int) -> str:
    with app.app_context():
        return cards.version(db.session.get(Ticket, ticket_id))


def test_board_shows_columns_in_order_with_counts(app, client, auth):
    with app.app_context():
        factories.make_ticket("Broken screen", column_name="In progress")
        factories.make_ticket("Old thing", column_name="Done")
    auth.login()
    html = client.get("/board").get_data(as_text=True)
    names = re.findall(r'<section class="lane[^"]*" aria-label="([^"]+)"', html)
    assert names == ["New", "In progress", "Waiting", "Done"]
    assert lane_of(html, "Broken screen") == "In progress"
    assert lane_of(html, "Old thing") == "Done"
    assert re.findall(r'<span class="count">(\d+)</span>', html) == ["0", "1", "0", "1"]


def test_cards_most_urgent_first_then_oldest_and_the_order_is_stated(app, client, auth):
    with app.app_context():
        make("Normal old", 10, priority=2)
        make("Urgent new", 1, priority=4)
        make("Normal new", 2, priority=2)
        make("Urgent old", 5, priority=4)
        make("Low oldest", 30, priority=1)
        make("High", 0, priority=3)
    auth.login()
    html = client.get("/board").get_data(as_text=True)
    assert titles_in(html, "New") == ["Urgent old", "Urgent new", "High", "Normal old", "Normal new", "Low oldest"]
    assert "Cards: most urgent first, then oldest first" in html


def test_cards_show_priority_assignee_and_age_with_the_full_time_in_a_title(app, client, auth, ids):
    with app.app_context():
        ticket_id = make("Printer jam", 3, priority=3, assignee_id=ids.agent)
        opened = db.session.get(Ticket, ticket_id).created_at
        from itsm.templating import show_time
        full = show_time(opened)
    auth.login()
    page = client.get("/board").get_data(as_text=True)
    card = re.search(rf'<article[^>]*id="card-{ticket_id}".*?</article>', page, re.S).group(0)
    assert "prio-high" in card and "Alan Agent" in card
    assert f'<span class="age" title="Opened {full}">3d</span>' in card


@pytest.mark.parametrize(("seconds", "shown"), [(5, "5s"), (600, "10m"), (7200, "2h"), (86400 * 3, "3d"),
                                                (86400 * 15, "2w"), (86400 * 70, "2mo"), (86400 * 800, "2y")])
def test_short_age(seconds, shown):
    now = utcnow()
    assert cards.short_age(now - timedelta(seconds=seconds), now) == shown


def test_cap_with_n_more_linking_to_the_list_with_the_same_filters_and_order(app, client, auth, ids):
    app.config["BOARD_CARDS_PER_COLUMN"] = 2
    with app.app_context():
        for i in range(4):
            make(f"Disk {i}", 10 - i, priority=3, category="Hardware")
        make("Disk urgent", 0, priority=4, category="Hardware")
        make("Disk software", 20, priority=4, category="Software")
    auth.login()
    html = client.get("/board?category=hardware&q=disk").get_data(as_text=True)
    assert titles_in(html, "New") == ["Disk urgent", "Disk 0"]
    more = re.search(r'<a class="more" href="([^"]+)">(\d+) more in the list', html)
    assert more.group(2) == "3"
    link = more.group(1).replace("&amp;", "&")
    assert link.startswith("/tickets?") and f"column={ids.columns['New']}" in link
    assert "category=hardware" in link and "q=disk" in link and "sort=board" in link
    listed = client.get(link).get_data(as_text=True)
    assert re.search(r">5 tickets( ·[^<]*)?</p>", listed), listed
    rows = re.findall(r'<td class="title"><a href="/tickets/\d+">([^<]+)</a></td>', listed)
    assert rows == ["Disk urgent", "Disk 0", "Disk 1", "Disk 2", "Disk 3"]  # the board's order, continued


def test_filters_by_assignee_priority_category_and_text(app, client, auth, ids):
    with app.app_context():
        make("VPN down", priority=4, assignee_id=ids.agent, category="Network")
        make("VPN slow", priority=2, assignee_id=ids.admin, category="Network")
        make("Mouse broken", priority=4, category="Hardware")
    auth.login_agent()

    def shown(query: str) -> set[str]:
        response = client.get("/board" + query)
        assert response.status_code == 200
        return set(titles_in(response.get_data(as_text=True), "New"))

    assert shown("") == {"VPN down", "VPN slow", "Mouse broken"}
    assert shown("?assignee=me") == shown("?mine=1") == {"VPN down"}
    assert shown(f"?assignee={ids.admin}") == {"VPN slow"}
    assert shown("?assignee=none") == {"Mouse broken"}
    assert shown("?priority=urgent") == {"VPN down", "Mouse broken"}
    assert shown("?category=NETWORK") == {"VPN down", "VPN slow"}
    assert shown("?q=vpn&priority=urgent") == {"VPN down"}
    page = client.get("/board?q=vpn&priority=urgent&category=Network").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="q"[^>]*value="vpn"', page)  # the form shows the filters it applied
    assert re.search(r'<option selected value="urgent">', page)
    assert re.findall(r'<span class="count">(\d+)</span>', page)[0] == "1"


@pytest.mark.parametrize("query", ["?assignee=999999", "?priority=extreme", "?assignee=%20x", "?q=" + "x" * 201,
                                   "?category=" + "c" * 81])
def test_bad_filters_are_a_400_with_the_message_next_to_the_field(client, auth, query):
    auth.login()
    response = client.get("/board" + query)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert 'class="error"' in text and "Fix the filters above to see the board." in text


def test_move_with_the_form_redirects_back(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Move me").id
    auth.login_agent()
    response = auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(ids.columns["Done"]),
                                                        "seen": seen_of(app, ticket_id), "next": "/board?q=move"})
    assert response.status_code == 302 and response.location == "/board?q=move"
    assert lane_of(client.get("/board").get_data(as_text=True), "Move me") == "Done"
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).done_at is not None


def test_move_refuses_off_site_next(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket().id
    auth.login()
    response = auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(ids.columns["Done"]),
                                                        "next": "https://evil.example/"})
    assert response.location == f"/tickets/{ticket_id}"


def test_move_as_json_answers_with_the_card(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Fetch me").id
    auth.login()
    response = auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(ids.columns["Waiting"]),
                                                        "seen": seen_of(app, ticket_id), "next": "/board"},
                         headers=JSON)
    assert response.status_code == 200 and response.is_json
    body = response.get_json()
    assert body["column_id"] == ids.columns["Waiting"] and body["changed"] is True
    assert body["message"] == f"Ticket #{ticket_id} moved to Waiting."
    assert body["version"] == seen_of(app, ticket_id)
    assert f'id="card-{ticket_id}"' in body["card"] and f'data-version="{body["version"]}"' in body["card"]
    assert lane_of(client.get("/board").get_data(as_text=True), "Fetch me") == "Waiting"


def test_a_concurrent_change_is_a_409_and_nothing_is_overwritten(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Contested").id
    seen = seen_of(app, ticket_id)
    with app.app_context():  # someone else moves it first
        from itsm.tickets import service
        ticket = db.session.get(Ticket, ticket_id)
        service.move_ticket(ticket, factories.column("In progress"), factories.user("agent@example.com"))
        db.session.commit()
    auth.login()
    response = auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(ids.columns["Done"]), "seen": seen,
                                                        "next": "/board"}, headers=JSON)
    assert response.status_code == 409 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 409 and body["title"] == "Changed meanwhile"
    assert body["detail"].startswith(f"Ticket #{ticket_id} changed after you loaded the page: "
                                     "Alan Agent moved it to In progress at ")
    assert "Nothing was overwritten" in body["detail"]
    assert body["column_id"] == ids.columns["In progress"] and body["version"] == seen_of(app, ticket_id)
    # The same through the form without JavaScript: a 409 page with the message and a way back.
    page = auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(ids.columns["Done"]), "seen": seen,
                                                    "next": "/board?q=x"})
    assert page.status_code == 409
    text = page.get_data(as_text=True)
    assert "Alan Agent moved it to In progress" in text and 'href="/board?q=x"' in text
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).column.name == "In progress"


@pytest.mark.parametrize(("data", "message"), [
    ({"column_id": "99999"}, "Choose one of the board's columns"),
    ({"column_id": "abc"}, "Choose one of the board's columns"),
    ({}, "Choose one of the board's columns"),
    ({"column_id": "{done}", "seen": "yesterday"}, "'seen' value is not a time"),
    ({"column_id": "{done}", "seen": "2026-01-01T00:00:00"}, "'seen' value is not a time"),
    ({"column_id": "{done}", "seen": "9999-12-31T23:59:59-23:00"}, "'seen' value is not a time"),
])
def test_bad_moves_are_a_clear_400(app, client, auth, ids, data, message):
    with app.app_context():
        ticket_id = factories.make_ticket("Stay").id
    auth.login()
    data = {k: v.format(done=ids.columns["Done"]) for k, v in data.items()}
    for headers in ({}, JSON):
        response = auth.post(f"/tickets/{ticket_id}/move", data, headers=headers)
        assert response.status_code == 400
        assert message in (response.get_json()["detail"] if headers else html.unescape(response.get_data(as_text=True)))
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).column.name == "New"


def test_card_actions_need_the_csrf_token(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Guarded").id
    auth.login()
    for url, data in ((f"/tickets/{ticket_id}/move", {"column_id": ids.columns["Done"]}),
                      (f"/tickets/{ticket_id}/assign-to-me", {})):
        response = client.post(url, data=data, headers=JSON)
        assert response.status_code == 400 and response.mimetype == "application/problem+json"
        assert "security token" in response.get_json()["detail"]
        assert client.post(url, data=data).status_code == 400
    with app.app_context():
        ticket = db.session.get(Ticket, ticket_id)
        assert ticket.column.name == "New" and ticket.assignee_id is None


def test_recurring_templates_and_unknown_tickets(app, client, auth, ids):
    with app.app_context():
        template_id = factories.make_template(start=utcnow() + timedelta(days=1),
                                              recurrence_interval="weekly").id
    auth.login()
    assert auth.post(f"/tickets/{template_id}/assign-to-me", headers=JSON).status_code == 400
    assert auth.post(f"/tickets/{template_id}/move", {"column_id": ids.columns["Done"]}).status_code == 400
    assert auth.post("/tickets/99999/assign-to-me", headers=JSON).status_code == 404


def test_assign_to_me_from_a_card_and_the_ticket_page(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Unowned").id
        mine_id = factories.make_ticket("Already mine", assignee_id=ids.agent).id
    auth.login_agent()
    board = client.get("/board").get_data(as_text=True)
    assert board.count("Assign to me</button>") == 1  # not on the card that is already the agent's
    assert f'action="/tickets/{ticket_id}/assign-to-me"' in board
    assert "Assign to me</button>" in client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert "Assign to me</button>" not in client.get(f"/tickets/{mine_id}").get_data(as_text=True)
    response = auth.post(f"/tickets/{ticket_id}/assign-to-me", {"seen": seen_of(app, ticket_id),
                                                                "next": f"/tickets/{ticket_id}"})
    assert response.status_code == 302 and response.location == f"/tickets/{ticket_id}"
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).assignee_id == ids.agent
    again = auth.post(f"/tickets/{ticket_id}/assign-to-me", {"seen": seen_of(app, ticket_id)}, headers=JSON)
    assert again.status_code == 200 and again.get_json()["changed"] is False


def test_assign_to_me_after_someone_else_took_it_is_a_409(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Hot potato").id
    seen = seen_of(app, ticket_id)
    auth.login()  # the admin takes it ...
    assert auth.post(f"/tickets/{ticket_id}/assign-to-me", {"seen": seen}, headers=JSON).status_code == 200
    auth.logout()
    other = app.test_client()  # ... while the agent's board still shows it unassigned
    from tests.conftest import AuthActions
    agent = AuthActions(other)
    agent.login_agent()
    response = agent.post(f"/tickets/{ticket_id}/assign-to-me", {"seen": seen}, headers=JSON)
    assert response.status_code == 409
    assert "Ada Admin assigned it to Ada Admin" in response.get_json()["detail"]
    assert "Ada Admin" in response.get_json()["card"]
    with app.app_context():
        assert db.session.get(Ticket, ticket_id).assignee_id == ids.admin


def test_ticket_list_filters_by_category_ignoring_case(app, client, auth):
    with app.app_context():
        factories.make_ticket("Keyboard", category="Hardware")
        factories.make_ticket("Excel", category="Software")
    auth.login()
    text = client.get("/tickets?category=hardware").get_data(as_text=True)
    assert "Keyboard" in text and "Excel" not in text
