"""Ticket changes, each recorded as a history event. Callers commit."""

from __future__ import annotations

from itsm.board.models import BoardColumn
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail import notify
from itsm.tickets import categories
from itsm.tickets.models import PRIORITIES, Comment, Ticket, TicketEvent
from itsm.users.models import User

# Fields an edit may change, and how each is shown in the history.
EDITABLE = ("title", "description", "priority", "column_id", "assignee_id", "requester_email", "category")


def _display(field: str, value):
    if value is None or value == "":
        return None
    if field == "priority":
        return PRIORITIES.get(value, value)
    if field == "column_id":
        column = db.session.get(BoardColumn, value)
        return column.name if column else value
    if field == "assignee_id":
        user = db.session.get(User, value)
        return user.display_name if user else value
    if field == "description":
        return value if len(value) <= 200 else value[:197] + "..."
    return value


def _history_name(field: str) -> str:
    return {"column_id": "column", "assignee_id": "assignee"}.get(field, field)


def record(ticket: Ticket, kind: str, actor: User | None, changes: dict | None = None) -> TicketEvent:
    event = TicketEvent(ticket=ticket, kind=kind, actor=actor, changes=changes or {}, created_at=utcnow())
    db.session.add(event)
    return event


def _apply_done_state(ticket: Ticket, old_column: BoardColumn | None, new_column: BoardColumn, now) -> None:
    """done_at marks entry into a done column; leaving done clears it; done-to-done keeps it."""
    was_done = bool(old_column and old_column.is_done_column)
    if new_column.is_done_column and not was_done:
        ticket.done_at = now
    elif not new_column.is_done_column:
        ticket.done_at = None


def create_ticket(*, actor: User | None, column: BoardColumn | None, title: str, description: str = "",
                  priority: int = 2, assignee_id: int | None = None, requester_email: str | None = None,
                  category: str = "") -> Ticket:
    now = utcnow()
    ticket = Ticket(
        title=title.strip(), description=description or "", priority=priority,
        column_id=column.id if column else None,
        assignee_id=assignee_id, requester_email=requester_email or None, category=categories.canonical(category),
        created_by_id=actor.id if actor else None, created_at=now, updated_at=now,
    )
    db.session.add(ticket)
    if column is None:  # a recurring template: it opens tickets, it is not on the board
        record(ticket, "created", actor, {"title": [None, ticket.title]})
        return ticket
    ticket.column = column
    _apply_done_state(ticket, None, column, now)
    record(ticket, "created", actor, {"title": [None, ticket.title], "column": [None, column.name]})
    notify.ticket_created(ticket)
    return ticket


def update_ticket(ticket: Ticket, actor: User | None, **values) -> dict:
    """Apply the given field values; returns the recorded changes (empty when nothing changed)."""
    unknown = set(values) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    if "title" in values:
        values["title"] = values["title"].strip()
    if "category" in values:
        values["category"] = (values["category"] or "").strip()
        if values["category"] != ticket.category:  # a changed category takes an existing spelling
            values["category"] = categories.canonical(values["category"])
    if "requester_email" in values:
        values["requester_email"] = values["requester_email"] or None
    changes = {}
    old_column = ticket.column
    for field, new in values.items():
        old = getattr(ticket, field)
        if old != new:
            changes[_history_name(field)] = [_display(field, old), _display(field, new)]
            setattr(ticket, field, new)
    if not changes:
        return {}
    now = utcnow()
    became_done = False
    if "column" in changes:
        new_column = db.session.get(BoardColumn, ticket.column_id)
        ticket.column = new_column
        became_done = new_column.is_done_column and not (old_column and old_column.is_done_column)
        _apply_done_state(ticket, old_column, new_column, now)
    ticket.updated_at = now
    record(ticket, "moved" if set(changes) == {"column"} else "updated", actor, changes)
    if not ticket.is_recurring:
        notify.ticket_updated(ticket, changes, actor, became_done)
    return changes


def move_ticket(ticket: Ticket, column: BoardColumn, actor: User | None) -> bool:
    return bool(update_ticket(ticket, actor, column_id=column.id))


def add_comment(ticket: Ticket, actor: User | None, body: str, is_public: bool = True,
                author_email: str | None = None) -> Comment:
    """``author_email``: a requester's reply by email (no user behind it)."""
    now = utcnow()
    comment = Comment(ticket_id=ticket.id, author=actor, body=body.strip(), is_public=is_public, created_at=now,
                      author_email=author_email)
    db.session.add(comment)
    ticket.updated_at = now
    record(ticket, "commented", actor, {"comment": [None, "public" if is_public else "internal"]})
    if not ticket.is_recurring:
        notify.comment_added(ticket, comment, actor)
    return comment


def set_archived(ticket: Ticket, actor: User | None, archived: bool) -> bool:
    if ticket.is_archived == archived:
        return False
    now = utcnow()
    ticket.is_archived = archived
    ticket.archived_at = now if archived else None
    ticket.updated_at = now
    record(ticket, "archived" if archived else "unarchived", actor, {"archived": [not archived, archived]})
    return True
