"""The board: lanes, cards, moving without JavaScript."""

from __future__ import annotations

import re

from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories


def lane_of(html: str, title: str) -> str:
    """Name of the lane whose section holds the card with this title."""
    for match in re.finditer(r'<section class="lane[^"]*" aria-label="([^"]+)".*?</section>', html, re.S):
        if title in match.group(0):
            return match.group(1)
    raise AssertionError(f"{title} not on the board")


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


def test_move_on_the_board(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Move me").id
    auth.login_agent()
    response = auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(ids.columns["Done"]), "next": "/board"})
    assert response.status_code == 302 and response.location == "/board"
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


def test_board_limits_cards_and_links_to_the_rest(app, client, auth):
    app.config["BOARD_CARDS_PER_COLUMN"] = 2
    with app.app_context():
        for i in range(3):
            factories.make_ticket(f"Card {i}")
    auth.login()
    html = client.get("/board").get_data(as_text=True)
    assert "1 more in the list" in html
    assert "Card 0" not in html and "Card 2" in html


def test_my_tickets_filter(app, client, auth, ids):
    with app.app_context():
        factories.make_ticket("Mine", assignee_id=ids.agent)
        factories.make_ticket("Not mine")
    auth.login_agent()
    html = client.get("/board?mine=1").get_data(as_text=True)
    assert "Mine" in html and "Not mine" not in html
