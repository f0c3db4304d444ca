"""Read-side queries for the ticket list, shaped to use the tickets indexes."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, tuple_
from sqlalchemy.orm import aliased, selectinload

from itsm.board.models import BoardColumn
from itsm.extensions import db
from itsm.tickets import categories
from itsm.tickets.models import PRIORITY_BY_NAME, Ticket
from itsm.users.models import User
from itsm.web import Page

# Each sort's keys with their direction. The list's sorts run all in one direction, so one index serves
# each read forwards or backwards: created_at and updated_at by ix_tickets_recurring_archived_created /
# _updated (and the assignee index for created), priority by ix_tickets_recurring_archived_priority.
# "board" is the board's card order (most urgent, then oldest), for its "N more" links, which always
# filter by column: ix_tickets_column_archived_priority gives each priority's rows in order. No index
# leads with the requester, title, column or assignee name, so those columns are not sortable.
SORT_KEYS = {
    "newest": ((Ticket.created_at, True), (Ticket.id, True)),
    "oldest": ((Ticket.created_at, False), (Ticket.id, False)),
    "updated": ((Ticket.updated_at, True), (Ticket.id, True)),
    "updated_oldest": ((Ticket.updated_at, False), (Ticket.id, False)),
    "priority": ((Ticket.priority, True), (Ticket.created_at, True), (Ticket.id, True)),
    "priority_lowest": ((Ticket.priority, False), (Ticket.created_at, False), (Ticket.id, False)),
    "board": ((Ticket.priority, True), (Ticket.created_at, False), (Ticket.id, False)),
}
ORDERS = {name: tuple(c.desc() if descending else c.asc() for c, descending in keys)
          for name, keys in SORT_KEYS.items()}
# A sortable header: its two sorts (first click, then the reverse).
HEADER_SORTS = {"created": ("newest", "oldest"), "updated": ("updated", "updated_oldest"),
                "priority": ("priority", "priority_lowest")}


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_conditions(*, q: str = "", column: str = "", assignee: str = "", priority: str = "", category: str = "",
                      archived: bool = False, me_id: int | None = None, recurring: bool = False) -> list:
    """WHERE clauses for already-validated filter values: tickets, or (``recurring``) templates."""
    conditions = [Ticket.is_recurring.is_(recurring), Ticket.is_archived.is_(archived)]
    if column:
        conditions.append(Ticket.column_id == int(column))
    return conditions + match_conditions(q=q, assignee=assignee, priority=priority, category=category, me_id=me_id)


def match_conditions(*, q: str = "", assignee: str = "", priority: str = "", category: str = "",
                     me_id: int | None = None) -> list:
    """The filters the list and the board share (already validated)."""
    conditions = []
    if assignee == "me":
        conditions.append(Ticket.assignee_id == me_id)
    elif assignee == "none":
        conditions.append(Ticket.assignee_id.is_(None))
    elif assignee:
        conditions.append(Ticket.assignee_id == int(assignee))
    if priority:
        conditions.append(Ticket.priority == PRIORITY_BY_NAME[priority])
    if category:  # "hardware" finds "Hardware"; no index on category: see itsm/tickets/categories.py
        conditions.append(categories.matches(category))
    if q:
        pattern = f"%{escape_like(q)}%"
        # ILIKE is served by trigram indexes on PostgreSQL; SQLite's LIKE ignores ASCII case already.
        conditions.append(or_(Ticket.title.ilike(pattern, escape="\\"),
                              Ticket.description.ilike(pattern, escape="\\")))
    return conditions


def ticket_page(conditions: list, sort: str, page: int, per_page: int, recurring: bool = False) -> Page:
    total = db.session.scalar(db.select(func.count(Ticket.id)).where(*conditions))
    stmt = (
        db.select(Ticket)
        .where(*conditions)
        .order_by(*ORDERS[sort or "newest"])
        .limit(per_page)
        .offset((page - 1) * per_page)
        .options(selectinload(Ticket.assignee))
    )
    if recurring:
        stmt = stmt.options(selectinload(Ticket.recurrence))
    return Page(items=db.session.scalars(stmt).all(), page=page, per_page=per_page, total=total)


def export_rows(conditions: list, sort: str, batch_size: int = 1000):
    """Every ticket the conditions match, as plain tuples, read in keyset batches of ``batch_size``.

    A batch continues after the last row of the one before (a row comparison on the sort's index),
    so the 100,000th row costs what the first did and no more than one batch is held in memory.
    """
    keyed = SORT_KEYS[sort or "newest"]
    keys = tuple(c for c, _ in keyed)
    assignee = aliased(User)
    stmt = (
        db.select(Ticket.id, Ticket.title, Ticket.priority, BoardColumn.name, assignee.name, assignee.email,
                  Ticket.requester_email, Ticket.category, Ticket.created_at, Ticket.updated_at,
                  Ticket.archived_at, *keys)
        .outerjoin(BoardColumn, BoardColumn.id == Ticket.column_id)
        .outerjoin(assignee, assignee.id == Ticket.assignee_id)
        .where(*conditions)
        .order_by(*ORDERS[sort or "newest"])
        .limit(batch_size)
    )
    width = len(keys)
    after = None
    while True:
        page = stmt
        if after is not None:
            page = stmt.where(_after(keyed, tuple(after)))
        rows = db.session.execute(page).all()
        for row in rows:
            yield row[:-width]
        if len(rows) < batch_size:
            return
        after = rows[-1][-width:]


def _after(keyed, last: tuple):
    """Rows after ``last`` in the sort's order. One direction throughout is one row comparison, which the
    index takes as a range; mixed directions become the lexicographic chain of comparisons."""
    directions = {descending for _, descending in keyed}
    keys = [c for c, _ in keyed]
    if len(directions) == 1:
        position = tuple_(*keys)
        # A plain tuple: each value is bound with its column's type (UTCDateTime on SQLite).
        return position < last if directions == {True} else position > last
    chain = []
    for i, (column, descending) in enumerate(keyed):
        step = column < last[i] if descending else column > last[i]
        chain.append(and_(*(keys[j] == last[j] for j in range(i)), step))
    return or_(*chain)

