"""The board's cards: which ones a column shows, in what order, and what a card says."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import get_template_attribute
from flask_login import current_user
from sqlalchemy import func
from sqlalchemy.orm.attributes import set_committed_value

from itsm.board.models import BoardColumn
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.templating import show_time
from itsm.tickets.models import PRIORITIES, Ticket, TicketEvent
from itsm.users.models import User

ORDER_TEXT = "most urgent first, then oldest first"
URGENT_FIRST = sorted(PRIORITIES, reverse=True)


def version(ticket: Ticket) -> str:
    """What a page saw of a ticket: its updated_at, exact to the microsecond."""
    return ticket.updated_at.astimezone(UTC).isoformat(timespec="microseconds")


def parse_version(raw: str | None) -> str | None:
    """A submitted version, normalised; None when it is not a time at all."""
    try:
        value = datetime.fromisoformat(raw or "")
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    try:
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    except (OverflowError, ValueError):
        return None


def change_since(ticket: Ticket) -> str:
    """The latest change to a ticket, in words, for the "changed meanwhile" message."""
    event = db.session.scalars(
        db.select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        .order_by(TicketEvent.created_at.desc(), TicketEvent.id.desc()).limit(1)).first()
    who = event.actor.display_name if event and event.actor else "Someone"
    if event is None:
        return "It was changed"
    what = {"moved": f"moved it to {ticket.column.name}" if ticket.column else "moved it",
            "commented": "commented on it", "archived": "archived it", "unarchived": "restored it"}.get(
        event.kind, "changed it")
    if event.kind == "updated" and set(event.changes) == {"assignee"}:
        what = f"assigned it to {ticket.assignee.display_name}" if ticket.assignee else "unassigned it"
    return f"{who} {what} at {show_time(event.created_at, label=True)}"


def conflict_message(ticket: Ticket) -> str:
    return (f"Ticket #{ticket.id} changed after you loaded the page: {change_since(ticket)}. "
            "Nothing was overwritten; the card now shows it as it is. Try again if you still want to.")


def short_age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, in the fewest characters: 40s, 12m, 5h, 3d, 7w, 4mo, 2y."""
    if value is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - value).total_seconds()))
    for size, unit in ((365 * 86400, "y"), (30 * 86400, "mo"), (7 * 86400, "w"), (86400, "d"), (3600, "h"),
                       (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def open_counts(columns: list[BoardColumn], conditions: list) -> dict[int, int]:
    base = [Ticket.is_archived.is_(False), *conditions]
    if conditions:  # one pass over what the filters leave
        return dict(db.session.execute(
            db.select(Ticket.column_id, func.count(Ticket.id)).where(*base).group_by(Ticket.column_id)).all())
    # Unfiltered, one index-only count per column beats a GROUP BY over every open ticket.
    return {column.id: db.session.scalar(
        db.select(func.count()).select_from(Ticket).where(Ticket.column_id == column.id, *base))
        for column in columns}


def column_cards(column: BoardColumn, conditions: list, limit: int, priority: int | None = None) -> list[Ticket]:
    """The first ``limit`` open cards of a column, most urgent first, then oldest first.

    One range of ix_tickets_column_archived_priority per priority, urgent first, stopping once the
    column is full: a few index probes whatever the column's size (a single ORDER BY priority DESC,
    created_at ASC would sort every ticket of the column)."""
    cards: list[Ticket] = []
    for value in [priority] if priority else URGENT_FIRST:
        cards += db.session.scalars(
            db.select(Ticket).where(Ticket.column_id == column.id, Ticket.is_archived.is_(False),
                                    Ticket.priority == value, *conditions)
            .order_by(Ticket.created_at, Ticket.id).limit(limit - len(cards))).all()
        if len(cards) >= limit:
            break
    return cards


def load_assignees(tickets: list[Ticket]) -> None:
    """One query for every card's assignee, set on the cards: the session's identity map holds objects
    weakly, so users merely loaded are gone again and each card would load its own."""
    ids = {t.assignee_id for t in tickets if t.assignee_id}
    users = {u.id: u for u in db.session.scalars(db.select(User).where(User.id.in_(ids)))} if ids else {}
    for ticket in tickets:
        set_committed_value(ticket, "assignee", users.get(ticket.assignee_id))


def card_html(ticket: Ticket, columns: list[BoardColumn], back: str) -> str:
    card = get_template_attribute("board/_card.html", "card")
    return str(card(ticket, columns, back, current_user.id, utcnow()))


def card_payload(ticket: Ticket, columns: list[BoardColumn], back: str) -> dict:
    """What the board's script needs to show a card as it is now."""
    return {"ticket": ticket.id, "column_id": ticket.column_id, "archived": ticket.is_archived,
            "version": version(ticket), "card": card_html(ticket, columns, back)}
