"""The ticket list: sortable headers, bulk actions, CSV export."""

from __future__ import annotations

import csv
import io
import re
import types
from datetime import timedelta

import pytest
from sqlalchemy import event

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.tickets import export as export_module
from itsm.tickets.models import Ticket, TicketEvent
from tests import factories

TITLES = ("Printer jam", "VPN down", "Mouse broken")


@pytest.fixture
def three(app, ids):
    """Three tickets created a day apart, updated in another order, with different priorities."""
    with app.app_context():
        made = [factories.make_ticket("Printer jam", priority=1, requester_email="pat@example.com"),
                factories.make_ticket("VPN down", priority=4, requester_email="vic@example.com"),
                factories.make_ticket("Mouse broken", priority=3)]
        now = utcnow()
        for n, (ticket, updated_days_ago) in enumerate(zip(made, (0, 2, 1), strict=True)):
            row = db.session.get(Ticket, ticket.id)
            row.created_at = now - timedelta(days=3 - n)
            row.updated_at = now - timedelta(days=updated_days_ago, hours=-1)
        db.session.commit()
        return [t.id for t in made]


def titles(html: str) -> list[str]:
    table = html.split("<tbody>")[1]
    return sorted((t for t in TITLES if t in table), key=table.index)


@pytest.mark.parametrize(("sort", "expected"), [
    ("", ["Mouse broken", "VPN down", "Printer jam"]),
    ("newest", ["Mouse broken", "VPN down", "Printer jam"]),
    ("oldest", ["Printer jam", "VPN down", "Mouse broken"]),
    ("updated", ["Printer jam", "Mouse broken", "VPN down"]),
    ("updated_oldest", ["VPN down", "Mouse broken", "Printer jam"]),
    ("priority", ["VPN down", "Mouse broken", "Printer jam"]),
    ("priority_lowest", ["Printer jam", "Mouse broken", "VPN down"]),
])
def test_every_sort_orders_the_list(client, auth, three, sort, expected):
    auth.login()
    response = client.get(f"/tickets?sort={sort}")
    assert response.status_code == 200
    assert titles(response.get_data(as_text=True)) == expected


def test_headers_link_the_reverse_sort_and_keep_the_filters(client, auth, three):
    auth.login()
    html = client.get("/tickets?q=o&priority=&sort=newest&page=1").get_data(as_text=True)
    # The current sort is stated in words and on its header; its link reverses it, the page resets.
    assert "sorted newest first" in html
    created = re.search(r'<th aria-sort="descending"><a href="([^"]+)"[^>]*>Created', html)
    assert created and created.group(1) == "/tickets?q=o&amp;priority=&amp;sort=oldest"
    assert re.search(r'<th><a href="/tickets\?q=o&amp;priority=&amp;sort=updated"[^>]*>Updated</a>', html)
    assert re.search(r'<th><a href="/tickets\?q=o&amp;priority=&amp;sort=priority"[^>]*>Priority</a>', html)
    reversed_html = client.get("/tickets?q=o&sort=oldest").get_data(as_text=True)
    assert "sorted oldest first" in reversed_html
    assert re.search(r'<th aria-sort="ascending"><a href="/tickets\?q=o&amp;sort=newest"', reversed_html)


def test_created_and_requester_columns(client, auth, three):
    auth.login()
    html = client.get("/tickets").get_data(as_text=True)
    assert "<th>Requester</th>" in html and ">Created <span" in html
    assert "pat@example.com" in html and "vic@example.com" in html


def test_list_sorts_are_the_indexed_ones():
    """Only sorts an existing index serves: (is_recurring, is_archived, <keys>) read either way."""
    from itsm.tickets.forms import SORTS
    from itsm.tickets.queries import SORT_KEYS

    indexes = {tuple(c.name for c in ix.columns) for ix in Ticket.__table__.indexes}
    assert set(SORTS) == set(SORT_KEYS)
    for name, keyed in SORT_KEYS.items():
        names = tuple(c.name for c, _ in keyed)
        if name == "board":  # offered filtered by column only (the board's "N more")
            assert ("column_id", "is_archived", *names) in indexes
            continue
        assert len({descending for _, descending in keyed}) == 1, name  # one direction: one index range
        assert ("is_recurring", "is_archived", *names) in indexes


def events_of(ticket_id: int) -> list[TicketEvent]:
    return db.session.scalars(db.select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)
                              .order_by(TicketEvent.id)).all()


def test_bulk_assign_move_and_priority_record_each_change(app, client, auth, ids, three):
    auth.login()
    first, second, third = three
    response = auth.post("/tickets?sort=oldest", {
        "ticket_id": [str(first), str(second)], "assign_to": str(ids.agent),
        "move_to": str(ids.columns["In progress"]), "set_priority": "3"})
    assert response.status_code == 302 and response.location == "/tickets?sort=oldest"
    page = client.get(response.location).get_data(as_text=True)
    assert "2 tickets updated." in page
    with app.app_context():
        for ticket_id in (first, second):
            ticket = db.session.get(Ticket, ticket_id)
            assert (ticket.assignee_id, ticket.column_id, ticket.priority) == (ids.agent, ids.columns["In progress"], 3)
            last = events_of(ticket_id)[-1]
            assert last.kind == "updated" and last.actor_id == ids.admin
            assert last.changes["assignee"] == [None, "Alan Agent"]
            assert last.changes["column"] == ["New", "In progress"]
        assert [e.kind for e in events_of(third)] == ["created"]  # not ticked: untouched
        assert events_of(first)[-1].changes["priority"] == ["low", "high"]

    # A column one of them is in already: the count says so. Then unassign.
    response = auth.post("/tickets", {"ticket_id": [str(first), str(third)],
                                      "move_to": str(ids.columns["In progress"])},
                         follow_redirects=True)
    assert "1 ticket updated; 1 already had that value." in response.get_data(as_text=True)
    response = auth.post("/tickets", {"ticket_id": [str(first)], "assign_to": "none"}, follow_redirects=True)
    assert "1 ticket updated." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Ticket, first).assignee_id is None
        assert events_of(first)[-1].changes == {"assignee": ["Alan Agent", None]}


def snapshot(app) -> list[tuple]:
    with app.app_context():
        tickets = db.session.execute(db.select(Ticket.id, Ticket.assignee_id, Ticket.column_id, Ticket.priority,
                                               Ticket.updated_at).order_by(Ticket.id)).all()
        return [tuple(t) for t in tickets] + [(db.session.scalar(db.select(db.func.count(TicketEvent.id))),)]


@pytest.mark.parametrize(("data", "message"), [
    ({"set_priority": "3"}, "Tick at least one ticket."),
    ({"ticket_id": ["SELF"]}, "Choose an assignee, a column or a priority to change."),
    ({"ticket_id": ["SELF"], "set_priority": "9"}, "Not a valid choice."),
    ({"ticket_id": ["SELF"], "assign_to": "robot"}, "Not a valid choice."),
    ({"ticket_id": ["SELF"], "move_to": "999999"}, "Not a valid choice."),
    ({"ticket_id": ["SELF", "999999"], "set_priority": "3"}, "No such ticket: #999999."),
    ({"ticket_id": ["SELF", "1; drop"], "set_priority": "3"}, "not a ticket number"),
    ({"ticket_id": ["SELF", "²"], "set_priority": "3"}, "not a ticket number"),
    ({"ticket_id": [str(n) for n in range(1, 102)], "set_priority": "3"}, "Select at most 100 tickets"),
])
def test_bad_bulk_input_changes_nothing_and_says_why(app, client, auth, three, data, message):
    auth.login()
    data = {**data, "ticket_id": [str(three[0]) if v == "SELF" else v for v in data.get("ticket_id", [])]}
    before = snapshot(app)
    response = auth.post("/tickets?q=o", data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in html
    assert "Mouse broken" in html  # the list, with its filter, is shown again around the message
    assert snapshot(app) == before


def test_a_template_cannot_be_changed_in_bulk(app, client, auth, three):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    with app.app_context():
        template = factories.make_template("Weekly check", start=datetime(2030, 1, 7, 9, tzinfo=ZoneInfo("UTC")))
    auth.login()
    before = snapshot(app)
    response = auth.post("/tickets", {"ticket_id": [str(template.id)], "set_priority": "4"})
    assert response.status_code == 400 and f"No such ticket: #{template.id}." in response.get_data(as_text=True)
    assert snapshot(app) == before


def test_bulk_without_the_csrf_token_is_refused(app, client, auth, three):
    auth.login()
    before = snapshot(app)
    response = client.post("/tickets", data={"ticket_id": [str(three[0])], "set_priority": "4"})
    assert response.status_code == 400
    response = client.post("/tickets", data={"ticket_id": [str(three[0])], "set_priority": "4",
                                             "csrf_token": "forged"})
    assert response.status_code == 400
    assert snapshot(app) == before


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_export_follows_the_filter_and_sort_with_quoting(app, client, auth, ids, three):
    with app.app_context():
        factories.make_ticket('Quote "this", and\nthat', priority=2, category="Hard, ware",
                              assignee_id=ids.agent, column_name="Waiting")
    auth.login()
    response = client.get("/tickets/export.csv?sort=oldest")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="tickets-')
    raw = response.get_data(as_text=True)
    assert '"Quote ""this"", and\nthat"' in raw and '"Hard, ware"' in raw
    rows = read_csv(response)
    assert rows[0] == ["id", "title", "priority", "column", "assignee", "requester", "category",
                       "created (UTC)", "updated (UTC)", "archived (UTC)"]
    assert [r[1] for r in rows[1:]] == ["Printer jam", "VPN down", "Mouse broken", 'Quote "this", and\nthat']
    assert rows[1][2:7] == ["low", "New", "", "pat@example.com", ""]
    assert rows[4][2:7] == ["normal", "Waiting", "Alan Agent", "", "Hard, ware"]
    assert rows[1][7].endswith("+00:00") and rows[1][9] == ""

    filtered = read_csv(client.get("/tickets/export.csv?priority=urgent"))
    assert [r[1] for r in filtered[1:]] == ["VPN down"]
    assert client.get("/tickets/export.csv?priority=meh").status_code == 400


def test_csv_export_guards_against_formulas(app, client, auth):
    with app.app_context():
        for title in ("=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "plain = fine"):
            factories.make_ticket(title, category="=cmd|' /C calc'!A0", requester_email="ok@example.com")
    auth.login()
    rows = read_csv(client.get("/tickets/export.csv?sort=oldest"))
    assert [r[1] for r in rows[1:]] == ["'=HYPERLINK(\"http://x\")", "'+1+1", "'-2", "'@SUM(A1)", "plain = fine"]
    assert {r[6] for r in rows[1:]} == {"'=cmd|' /C calc'!A0"}
    assert export_module.safe_cell("\tx") == "'\tx" and export_module.safe_cell(None) == ""


def test_csv_export_is_a_generator(app, ids):
    from itsm.auth.sessions import log_in
    from itsm.users.models import User

    with app.test_request_context("/tickets/export.csv"):
        log_in(db.session.get(User, ids.admin))
        response = app.view_functions["tickets.export"]()
        try:
            assert response.is_streamed and isinstance(response.response, types.GeneratorType)
        finally:
            response.close()


def test_csv_export_streams_reading_in_batches(app, client, auth, monkeypatch):
    app.config["TICKETS_EXPORT_BATCH"] = 2
    monkeypatch.setattr(export_module, "ROWS_PER_CHUNK", 1)
    with app.app_context():
        for n in range(5):
            factories.make_ticket(f"Batch ticket {n}")
        engine = db.engine
    auth.login()
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "FROM tickets" in statement and "LIMIT" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    response = client.get("/tickets/export.csv?sort=oldest", buffered=False)
    try:
        assert response.is_streamed
        chunks = iter(response.response)
        assert next(chunks).startswith(b"id,title,")
        assert statements == []  # the header went out before any read
        assert b"Batch ticket 0" in next(chunks)
        assert len(statements) == 1  # one batch read so far, not every row
        rest = b"".join(chunks)
    finally:
        response.close()
        event.remove(engine, "before_cursor_execute", count)
    assert [line.split(b",")[1] for line in rest.splitlines()] == [f"Batch ticket {n}".encode() for n in range(1, 5)]
    assert len(statements) == 3  # 2 + 2 + 1 rows: the third batch is short, so the export ends there


def test_csv_export_in_the_boards_order_continues_across_batches(app, client, auth):
    """The board's order runs in two directions (most urgent, then oldest): each batch still continues
    exactly where the one before ended, with no row twice or missed."""
    app.config["TICKETS_EXPORT_BATCH"] = 2
    with app.app_context():
        for n, priority in enumerate((2, 4, 2, 3, 4, 2, 1)):
            factories.make_ticket(f"Mixed {n}", priority=priority)
    auth.login()
    listed = client.get("/tickets?sort=board&q=Mixed").get_data(as_text=True)
    in_list = re.findall(r'<td class="title"><a href="/tickets/\d+">([^<]+)</a></td>', listed)
    exported = [r[1] for r in read_csv(client.get("/tickets/export.csv?sort=board&q=Mixed"))[1:]]
    assert exported == in_list == ["Mixed 1", "Mixed 4", "Mixed 3", "Mixed 0", "Mixed 2", "Mixed 5", "Mixed 6"]


def test_a_bulk_change_that_empties_its_page_returns_to_the_last_page_there_is(app, client, auth, ids):
    """Page 2 of the tickets in New holds one ticket; moving it out of New leaves no page 2: the list comes
    back on page 1 with the message, not a 404."""
    app.config["TICKETS_PER_PAGE"] = 2
    with app.app_context():
        made = [factories.make_ticket(f"Paged {n}").id for n in range(3)]
    auth.login()
    url = f"/tickets?column={ids.columns['New']}&sort=newest&page=2"
    assert client.get(url).status_code == 200
    response = auth.post(url, {"ticket_id": [str(made[0])], "move_to": str(ids.columns["Done"])})
    assert response.status_code == 302
    assert "page=" not in response.location and f"column={ids.columns['New']}" in response.location
    page = client.get(response.location)
    assert page.status_code == 200 and "1 ticket updated." in page.get_data(as_text=True)
