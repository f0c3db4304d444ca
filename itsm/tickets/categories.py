"""Categories stay free text, but "hardware" typed where "Hardware" exists becomes "Hardware".

Known categories are read from the newest WINDOW tickets only: tickets.category has no index, and
a case-insensitive look-up over every row would need an expression index (lower(category)), that is
a migration. The newest tickets walk the primary key backwards, so the cost stays the same at 100k
tickets or 10M. A spelling used only by older tickets is not suggested or matched on save; the list
filter still finds those tickets, since it compares ignoring case in SQL.
"""

from __future__ import annotations

from sqlalchemy import func, or_

from itsm.extensions import db
from itsm.tickets.models import Ticket

WINDOW = 5000


def _recent() -> list[tuple[str, int, int]]:
    """(spelling, uses, latest ticket id) of each category among the newest WINDOW tickets."""
    recent = (db.select(Ticket.id, Ticket.category).where(Ticket.category != "")
              .order_by(Ticket.id.desc()).limit(WINDOW).subquery())
    return [tuple(row) for row in db.session.execute(
        db.select(recent.c.category, func.count(), func.max(recent.c.id)).group_by(recent.c.category))]


def _spellings() -> dict[str, str]:
    """casefolded -> the spelling most used among the newest tickets (on a tie, the latest used)."""
    best: dict[str, tuple[int, int, str]] = {}
    for spelling, uses, latest in _recent():
        key = spelling.casefold()
        if key not in best or (uses, latest) > best[key][:2]:
            best[key] = (uses, latest, spelling)
    return {key: spelling for key, (_, _, spelling) in best.items()}


def known() -> list[str]:
    """The categories to suggest, one spelling each, in alphabetical order."""
    return sorted(_spellings().values(), key=str.casefold)


def canonical(value: str | None) -> str:
    """The existing spelling of a category equal to ``value`` ignoring case, else ``value`` trimmed."""
    value = (value or "").strip()
    if not value:
        return ""
    return _spellings().get(value.casefold(), value)


def matches(value: str):
    """A WHERE clause: the ticket's category equals ``value`` ignoring case. SQL's lower() folds ASCII
    only on SQLite, so the known spellings that fold to the same (e.g. "Über" for "über") count too."""
    folded = value.casefold()
    spellings = {spelling for spelling, _, _ in _recent() if spelling.casefold() == folded} | {value}
    return or_(func.lower(Ticket.category) == func.lower(value), Ticket.category.in_(sorted(spellings)))
