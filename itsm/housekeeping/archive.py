"""Archive tickets that have been done for a while: one UPDATE and one bulk history insert.

Measured from ``done_at`` (when the ticket entered a done column), so a late comment
does not keep a finished ticket on the board. Templates are never archived by this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select, text, update

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.tickets.models import Ticket, TicketEvent

tickets = Ticket.__table__
events = TicketEvent.__table__
SETTLE_AFTER = 10_000  # archived rows that make a VACUUM ANALYZE worth it

# PostgreSQL: archive and write every history event in one statement.
_PG_ARCHIVE = text("""
    WITH archived AS (
        UPDATE tickets SET is_archived = true, archived_at = :now, updated_at = :now
        WHERE is_archived = false AND done_at < :cutoff AND NOT is_recurring
        RETURNING id
    ), history AS (
        INSERT INTO ticket_events (ticket_id, actor_id, kind, changes, created_at)
        SELECT id, NULL, 'archived', CAST('{"archived": [false, true]}' AS json), :now FROM archived
    )
    SELECT count(*) FROM archived
""")


@dataclass
class Outcome:
    archived: int = 0
    cutoff: datetime | None = None
    candidates: list[tuple[int, str, datetime]] = field(default_factory=list)  # dry run: id, title, done_at


def _eligible(cutoff: datetime):
    # Served by ix_tickets_archived_done: a range of (false, done_at < cutoff).
    return (tickets.c.is_archived == False, tickets.c.done_at < cutoff,  # noqa: E712 -- SQL, not Python
            tickets.c.is_recurring.is_(False))


def archive_done(hours: float, *, now: datetime | None = None, dry_run: bool = False,
                 preview_limit: int = 1000) -> Outcome:
    """Archive tickets done for more than ``hours``; with ``dry_run``, list them instead."""
    now = now or utcnow()
    cutoff = now - timedelta(hours=hours)
    outcome = Outcome(cutoff=cutoff)
    with db.engine.begin() as conn:
        if dry_run:
            outcome.archived = conn.scalar(select(func.count()).select_from(tickets).where(*_eligible(cutoff)))
            outcome.candidates = [tuple(r) for r in conn.execute(
                select(tickets.c.id, tickets.c.title, tickets.c.done_at).where(*_eligible(cutoff))
                .order_by(tickets.c.done_at, tickets.c.id).limit(preview_limit))]
            return outcome
        outcome.archived = _archive(conn, cutoff, now)
    return outcome


def settle(outcome: Outcome) -> bool:
    """After a big pass on PostgreSQL, VACUUM ANALYZE the tickets: until then the index still holds
    the archived rows' old entries and the planner thinks they are due, so the next (empty) pass
    would wade through them, or scan the table. Returns whether it ran."""
    if outcome.archived < SETTLE_AFTER or db.engine.dialect.name != "postgresql":
        return False
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) tickets")
    return True


def _archive(conn: Connection, cutoff: datetime, now: datetime) -> int:
    if conn.dialect.name == "postgresql":
        return conn.scalar(_PG_ARCHIVE, {"cutoff": cutoff, "now": now})
    ids = conn.scalars(update(tickets).where(*_eligible(cutoff))
                       .values(is_archived=True, archived_at=now, updated_at=now).returning(tickets.c.id)).all()
    if ids:
        conn.execute(insert(events), [{"ticket_id": i, "actor_id": None, "kind": "archived",
                                       "changes": {"archived": [False, True]}, "created_at": now} for i in ids])
    return len(ids)
