"""Ticket and template history in words: who did what, with names, never raw values."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from itsm.extensions import db
from itsm.tickets.models import Ticket, TicketEvent
from tests import factories


def history_of(page: str) -> str:
    section = page[page.index('<ol class="history">'):]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section[:section.index("</ol>\n")]))


def test_ticket_history_says_what_happened_in_words(app, client, auth, ids):
    with app.app_context():
        ticket_id = factories.make_ticket("Printer jam").id
    auth.login()
    auth.post(f"/tickets/{ticket_id}/edit", {"title": "Printer jam", "description": "", "priority": "4",
                                             "column_id": str(ids.columns["Waiting"]), "assignee_id": str(ids.agent),
                                             "requester_email": "", "category": "Hardware"})
    auth.post(f"/tickets/{ticket_id}/comments", {"body": "Checked the tray"})
    auth.post(f"/tickets/{ticket_id}/archive")
    auth.post(f"/tickets/{ticket_id}/unarchive")
    history = history_of(client.get(f"/tickets/{ticket_id}").get_data(as_text=True))
    assert "Ada Admin restored the ticket from the archive" in history
    assert "Ada Admin archived the ticket" in history
    assert "Ada Admin added an internal comment" in history
    assert "Column: New → Waiting" in history and "Assignee: Alan Agent" in history
    assert "Priority: normal → urgent" in history and "Category: Hardware" in history
    assert "System created the ticket Title: Printer jam Column: New" in history
    for raw in ("True", "False", "archived:", "comment:", "None"):
        assert raw not in history, raw


def test_history_written_with_ids_or_booleans_reads_as_names(app, client, auth, ids):
    """Rows as older versions (or a direct write) stored them: ids and booleans, shown as names and words."""
    with app.app_context():
        ticket = factories.make_ticket("Old history")
        db.session.add(TicketEvent(ticket_id=ticket.id, kind="updated", changes={
            "column_id": [ids.columns["New"], ids.columns["Done"]], "assignee_id": [None, ids.agent],
            "archived": [True, False]}, created_at=datetime.now(UTC)))
        db.session.add(TicketEvent(ticket_id=ticket.id, kind="updated", changes={"assignee_id": [987654, None]},
                                   created_at=datetime.now(UTC)))
        db.session.commit()
        ticket_id = ticket.id
    auth.login()
    history = history_of(client.get(f"/tickets/{ticket_id}").get_data(as_text=True))
    assert "Column: New → Done" in history and "Assignee: Alan Agent" in history
    assert "Archived: archived → not archived" in history
    assert "Assignee: #987654 (deleted) → —" in history
    assert "True" not in history and "False" not in history


def test_template_history_says_paused_and_resumed(app, client, auth):
    with app.app_context():
        template = factories.make_template("Weekly check", start=datetime(2027, 1, 4, 9, tzinfo=UTC),
                                           recurrence_interval="weekly", recurrence_lead_hours=2)
    auth.login()
    assert auth.post(f"/tickets/{template.id}/pause").status_code == 302
    assert auth.post(f"/tickets/{template.id}/resume").status_code == 302
    page = client.get(f"/tickets/{template.id}").get_data(as_text=True)
    history = history_of(page)
    assert "Ada Admin paused the schedule" in history and "Ada Admin resumed the schedule" in history
    assert "created the recurring ticket" in history and "set the schedule" in history
    assert "active" not in history and "True" not in history and "False" not in history
    assert "<dt>Opens</dt><dd>2 hours before each occurrence</dd>" in page and "Opened" not in page
    with app.app_context():
        assert db.session.get(Ticket, template.id).recurrence.recurrence_active
