"""Ticket pages: create, edit, history, comments, archive, list filters."""

from __future__ import annotations

import pytest
from sqlalchemy import func

from itsm.extensions import db
from itsm.tickets.models import Comment, Ticket, TicketEvent
from tests import factories


def ticket_count() -> int:
    return db.session.scalar(db.select(func.count(Ticket.id)))


@pytest.fixture
def form(ids):
    def build(**overrides) -> dict:
        values = {"title": "Printer on fire", "description": "Smoke from tray 2", "priority": "3",
                  "column_id": str(ids.columns["New"]), "assignee_id": "0",
                  "requester_email": "pat@example.com", "category": "Hardware"}
        values.update(overrides)
        return values
    return build


def test_create_ticket_records_history(app, client, auth, form):
    auth.login()
    with app.app_context():
        agent = factories.user("agent@example.com")
        response = auth.post("/tickets/new", form(assignee_id=str(agent.id)))
        assert response.status_code == 302
        ticket = db.session.scalar(db.select(Ticket))
        assert response.location.endswith(f"/tickets/{ticket.id}")
        assert (ticket.title, ticket.priority_name, ticket.assignee_id) == ("Printer on fire", "high", agent.id)
        assert ticket.requester_email == "pat@example.com" and ticket.category == "Hardware"
        assert ticket.created_at.tzinfo is not None and ticket.done_at is None and not ticket.is_archived
        events = db.session.scalars(db.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()
        assert [e.kind for e in events] == ["created"]
        assert events[0].actor.email == "admin@example.com"
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "Printer on fire" in page and "Smoke from tray 2" in page and "created" in page


@pytest.mark.parametrize(
    ("overrides", "field_error"),
    [
        ({"title": ""}, "This field is required."),
        ({"title": "   "}, "This field is required."),
        ({"title": "x" * 201}, "Field cannot be longer than 200 characters."),
        ({"requester_email": "not-an-email"}, "Enter a valid email address."),
        ({"requester_email": "a@b.c\r\nBcc: x@y.z"}, "Enter a valid email address."),
        ({"column_id": "999999"}, "Not a valid choice."),
        ({"column_id": "abc"}, "Invalid Choice: could not coerce."),
        ({"assignee_id": "999999"}, "Not a valid choice."),
        ({"priority": "9"}, "Not a valid choice."),
        ({"category": "c" * 81}, "Field cannot be longer than 80 characters."),
    ],
)
def test_bad_ticket_input_is_refused_next_to_the_field(app, client, auth, form, overrides, field_error):
    auth.login()
    response = auth.post("/tickets/new", form(**overrides))
    assert response.status_code == 400
    assert field_error in response.get_data(as_text=True)
    with app.app_context():
        assert ticket_count() == 0


def test_missing_csrf_token_saves_nothing(app, client, auth, form):
    auth.login()
    response = client.post("/tickets/new", data=form())
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    with app.app_context():
        assert ticket_count() == 0


def test_script_tags_are_shown_escaped(app, client, auth, form):
    auth.login()
    evil = "<script>alert('x')</script>"
    auth.post("/tickets/new", form(title=evil, description=evil, category=evil))
    with app.app_context():
        ticket_id = db.session.scalar(db.select(Ticket.id))
    auth.post(f"/tickets/{ticket_id}/comments", {"body": evil, "is_public": "y"})
    for url in (f"/tickets/{ticket_id}", "/tickets", "/board", f"/tickets/{ticket_id}/edit"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in page, url
        assert "&lt;script&gt;" in page, url


def test_edit_records_each_change(app, client, auth, form):
    with app.app_context():
        ticket = factories.make_ticket("Old title", priority=2)
        agent = factories.user("agent@example.com")
    auth.login()
    response = auth.post(f"/tickets/{ticket.id}/edit", form(title="New title", priority="4",
                                                           assignee_id=str(agent.id), category="Network"))
    assert response.status_code == 302
    with app.app_context():
        event = db.session.scalars(db.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                   .order_by(TicketEvent.id.desc())).first()
        assert event.kind == "updated"
        assert event.changes["title"] == ["Old title", "New title"]
        assert event.changes["priority"] == ["normal", "urgent"]
        assert event.changes["assignee"] == [None, "Alan Agent"]
    # Saving again without changes adds no event.
    auth.post(f"/tickets/{ticket.id}/edit", form(title="New title", priority="4", assignee_id=str(agent.id),
                                                 category="Network"))
    with app.app_context():
        assert db.session.scalar(db.select(func.count()).select_from(TicketEvent)) == 2


def test_done_at_follows_done_columns(app, client, auth):
    with app.app_context():
        ticket_id = factories.make_ticket().id
        ids = {name: factories.column(name).id for name in ("New", "Done")}
        closed = factories.make_column_named("Closed", done=True).id
    auth.login()

    def move(column_id):
        return auth.post(f"/tickets/{ticket_id}/move", {"column_id": str(column_id)})

    def done_at():
        with app.app_context():
            return db.session.get(Ticket, ticket_id).done_at

    move(ids["Done"])
    entered = done_at()
    assert entered is not None
    move(closed)  # done to done keeps the first time it was done
    assert done_at() == entered
    move(ids["New"])
    assert done_at() is None


def test_move_with_unknown_column_changes_nothing(app, client, auth):
    with app.app_context():
        ticket = factories.make_ticket()
    auth.login()
    for bad in ("999999", "x", ""):
        assert auth.post(f"/tickets/{ticket.id}/move", {"column_id": bad}).status_code == 400
    assert client.post(f"/tickets/{ticket.id}/move", data={"column_id": "1"}).status_code == 400  # no CSRF
    with app.app_context():
        assert db.session.get(Ticket, ticket.id).column.name == "New"
        assert db.session.scalar(db.select(func.count()).select_from(TicketEvent)) == 1


def test_comments(app, client, auth):
    with app.app_context():
        ticket = factories.make_ticket()
    auth.login_agent()
    assert auth.post(f"/tickets/{ticket.id}/comments", {"body": "Rebooted it", "is_public": "y"}).status_code == 302
    assert auth.post(f"/tickets/{ticket.id}/comments", {"body": "internal note"}).status_code == 302
    response = auth.post(f"/tickets/{ticket.id}/comments", {"body": "   "})
    assert response.status_code == 400 and "This field is required." in response.get_data(as_text=True)
    with app.app_context():
        comments = db.session.scalars(db.select(Comment).order_by(Comment.id)).all()
        assert [(c.body, c.is_public, c.author.email) for c in comments] == [
            ("Rebooted it", True, "agent@example.com"), ("internal note", False, "agent@example.com")]
    page = client.get(f"/tickets/{ticket.id}").get_data(as_text=True)
    assert "Rebooted it" in page and "internal" in page


def test_archive_and_unarchive(app, client, auth):
    with app.app_context():
        ticket = factories.make_ticket("Old stuff")
    auth.login()
    assert auth.post(f"/tickets/{ticket.id}/archive").status_code == 302
    assert "Old stuff" not in client.get("/tickets").get_data(as_text=True)
    assert "Old stuff" not in client.get("/board").get_data(as_text=True)
    archived_page = client.get("/tickets?archived=1").get_data(as_text=True)
    assert "Old stuff" in archived_page and "Unarchive" in archived_page
    with app.app_context():
        stored = db.session.get(Ticket, ticket.id)
        assert stored.is_archived and stored.archived_at is not None
    assert auth.post(f"/tickets/{ticket.id}/unarchive", {"next": "/tickets?archived=1"}).status_code == 302
    with app.app_context():
        stored = db.session.get(Ticket, ticket.id)
        assert not stored.is_archived and stored.archived_at is None
        kinds = db.session.scalars(db.select(TicketEvent.kind).order_by(TicketEvent.id)).all()
        assert kinds == ["created", "archived", "unarchived"]


def test_unknown_ticket_is_404(client, auth):
    auth.login()
    assert client.get("/tickets/424242").status_code == 404
    assert client.get("/tickets/424242/edit").status_code == 404
    assert auth.post("/tickets/424242/comments", {"body": "x"}).status_code == 404
    assert client.get("/tickets/abc").status_code == 404


def test_list_filters_sorting_and_search(app, client, auth, ids):
    with app.app_context():
        factories.make_ticket("Printer jam", priority=1, description="tray 2")
        factories.make_ticket("VPN down", priority=4, assignee_id=ids.agent, column_name="In progress")
        factories.make_ticket("Mouse broken", priority=3, description="needs a PRINTER cable")
        factories.make_ticket("50% off_sale", priority=2)
        in_progress = factories.column("In progress").id
    auth.login()

    def titles(query: str) -> list[str]:
        response = client.get("/tickets" + query)
        assert response.status_code == 200, query
        html = response.get_data(as_text=True)
        found = [t for t in ("Printer jam", "VPN down", "Mouse broken", "50% off_sale") if t in html]
        return sorted(found, key=html.index)

    assert titles("") == ["50% off_sale", "Mouse broken", "VPN down", "Printer jam"]
    assert titles("?sort=oldest") == ["Printer jam", "VPN down", "Mouse broken", "50% off_sale"]
    assert titles("?sort=priority") == ["VPN down", "Mouse broken", "50% off_sale", "Printer jam"]
    assert titles("?q=printer") == ["Mouse broken", "Printer jam"]
    assert titles("?q=%25") == ["50% off_sale"]  # a literal percent sign, not a wildcard
    assert titles("?q=_") == ["50% off_sale"]
    assert titles(f"?column={in_progress}") == ["VPN down"]
    assert titles(f"?assignee={ids.agent}") == ["VPN down"]
    assert titles("?assignee=none&priority=low") == ["Printer jam"]
    assert titles("?assignee=me") == []


def test_pagination(app, client, auth):
    app.config["TICKETS_PER_PAGE"] = 2
    with app.app_context():
        for i in range(5):
            factories.make_ticket(f"Paged ticket {i}")
    auth.login()
    page2 = client.get("/tickets?page=2").get_data(as_text=True)
    # Titles with a space: a random CSRF token in the page can never contain one.
    shown = [f"Paged ticket {i}" for i in range(5) if f"Paged ticket {i}" in page2]
    assert "Page 2 of 3" in page2 and shown == ["Paged ticket 1", "Paged ticket 2"]
    assert client.get("/tickets?page=4").status_code == 404


@pytest.mark.parametrize(
    "query",
    ["?page=abc", "?page=0", "?page=-1", "?page=1e3", "?page=99999999999999999999", "?column=abc",
     "?column=999999", "?assignee=robot", "?priority=meh", "?sort=drop%20table", "?archived=maybe",
     "?q=" + "x" * 201],
)
def test_nonsense_list_parameters_are_400(client, auth, query):
    auth.login()
    response = client.get("/tickets" + query)
    assert response.status_code == 400
    assert "Bad request" in response.get_data(as_text=True) or "Not a valid choice" in response.get_data(as_text=True) \
        or "longer than" in response.get_data(as_text=True)


def test_new_ticket_page_on_an_empty_board_says_what_to_do(app, client, auth):
    from itsm.board.models import BoardColumn

    with app.app_context():
        db.session.execute(db.delete(BoardColumn))
        db.session.commit()
    auth.login()
    page = client.get("/tickets/new").get_data(as_text=True)
    assert "The board has no columns yet" in page and 'href="/admin/columns"' in page
