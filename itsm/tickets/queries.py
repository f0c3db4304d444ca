"""Read-side queries for the ticket list, shaped to use the tickets indexes."""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, request
from sqlalchemy import func, or_
from sqlalchemy.orm import selectinload

from itsm.extensions import db
from itsm.tickets import categories
from itsm.tickets.models import PRIORITY_BY_NAME, Ticket

ORDERS = {
    "newest": (Ticket.created_at.desc(), Ticket.id.desc()),
    "oldest": (Ticket.created_at.asc(), Ticket.id.asc()),
    "updated": (Ticket.updated_at.desc(), Ticket.id.desc()),
    "priority": (Ticket.priority.desc(), Ticket.created_at.desc(), Ticket.id.desc()),
}


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_conditions(*, q: str = "", column: str = "", assignee: str = "", priority: str = "", category: str = "",
                      archived: bool = False, me_id: int | None = None, recurring: bool = False) -> list:
    """WHERE clauses for already-validated filter values: tickets, or (``recurring``) templates."""
    conditions = [Ticket.is_recurring.is_(recurring), Ticket.is_archived.is_(archived)]
    if column:
        conditions.append(Ticket.column_id == int(column))
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


def page_number() -> int:
    """The ``page`` query argument, or a 400 naming the problem."""
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1 or len(raw) > 9:  # "²".isdigit() is True
        abort(400, "The page number must be a whole number of 1 or more.")
    return int(raw)


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


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
