"""Open the tickets recurring templates owe, set-based and exactly once.

Due templates are read in batches in due order; each batch's occurrences are inserted
in one statement, its templates advanced in another, and the batch committed once.
Occurrences are unique on (template_id, occurrence_at) and inserted with ON CONFLICT
DO NOTHING, so a retried job, two workers or a second scheduler can never open a
ticket twice. On PostgreSQL the batch is claimed with FOR UPDATE SKIP LOCKED so
several workers share the load; on SQLite a batch takes the write lock before it
reads, so a second process waits and then sees the first one's work.

Date math stays in Python (itsm.recurrence / dateutil): SQLite's "+1 month" rolls
Jan 31 into March where PostgreSQL stops at Feb 28, and both databases must agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import SimpleNamespace

from flask import current_app
from sqlalchemy import Connection, func, select, tuple_, update

from itsm.attachments import service as attachments
from itsm.board.models import BoardColumn
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.inbound import refs
from itsm.mail import outbox
from itsm.recurring import bulk
from itsm.recurring.models import Holiday, RecurringTicketRun, TicketRecurrence
from itsm.recurring.series import Series, plan, render_title
from itsm.tickets.models import PRIORITIES, Ticket
from itsm.users.models import User
from itsm.zones import is_known_zone

BATCH_SIZE = 1000
tickets = Ticket.__table__
recurrences = TicketRecurrence.__table__
run_rows = RecurringTicketRun.__table__
_TEMPLATE_COLUMNS = [recurrences.c.ticket_id.label("id")] + [tickets.c[name] for name in (
    "title", "description", "priority", "category", "assignee_id", "requester_email")] + [
    c for c in recurrences.c if c.name.startswith("recurrence_") or c.name == "next_occurrence"]


@dataclass
class Totals:
    processed: int = 0  # due templates handled
    created: int = 0  # tickets opened
    skipped: int = 0  # due times that opened no ticket (catch-up, open policy, already there)
    missed: int = 0  # due times that were already late when this pass came
    ended: int = 0  # series that reached their end
    planned: list[tuple[int, str, datetime]] = field(default_factory=list)  # dry run: (template, title, time)


@dataclass(frozen=True)
class _Board:
    """The board's columns as plain rows, read once per pass."""

    first: object | None  # row: id, name, is_done_column
    done: object | None
    names: dict[int, str]

    @classmethod
    def load(cls, conn: Connection) -> _Board:
        columns = conn.execute(select(BoardColumn.__table__).order_by("position", "id")).all()
        done = next((c for c in columns if c.is_done_column), None)
        return cls(first=columns[0] if columns else None, done=done, names={c.id: c.name for c in columns})


def due_query(now: datetime, limit: int, after: tuple | None = None, lock: bool = False):
    """Templates whose creation moment has come, in due order (served by ix_ticket_recurrences_due)."""
    due = recurrences.c.recurrence_due_at
    stmt = (select(*_TEMPLATE_COLUMNS).select_from(recurrences.join(tickets, tickets.c.id == recurrences.c.ticket_id))
            .where(due.is_not(None), due <= now, recurrences.c.recurrence_active.is_(True),
                   tickets.c.is_recurring.is_(True), tickets.c.is_archived.is_(False))
            .order_by(due, recurrences.c.ticket_id).limit(limit))
    if after is not None:
        stmt = stmt.where(tuple_(due, recurrences.c.ticket_id) > tuple_(*after))
    if lock:  # the schedule rows are what a pass changes; the tickets stay free for people
        stmt = stmt.with_for_update(skip_locked=True, of=recurrences)
    return stmt


def _previous_occurrences(conn: Connection, template_ids: list[int]) -> dict[int, object]:
    """Each template's latest occurrence (served by the (template_id, occurrence_at) unique index)."""
    if not template_ids:
        return {}
    other = tickets.alias("other")
    latest = (select(func.max(other.c.occurrence_at)).where(other.c.template_id == tickets.c.template_id)
              .scalar_subquery())
    rows = conn.execute(select(tickets.c.id, tickets.c.template_id, tickets.c.column_id, tickets.c.done_at,
                               tickets.c.is_archived)
                        .where(tickets.c.template_id.in_(template_ids), tickets.c.occurrence_at == latest)).all()
    return {row.template_id: row for row in rows}


def process_due(now: datetime | None = None, *, dry_run: bool = False, batch_size: int = BATCH_SIZE,
                progress: Callable[[Totals], None] | None = None, run_id: int | None = None) -> Totals:
    """Open every ticket that is due at ``now``; with ``dry_run``, only say what would be opened.
    With ``run_id``, that pass's audit row gets the running totals in each batch's transaction, so it
    tells what was committed even if the pass dies before it ends."""
    now = now or utcnow()
    totals = Totals()
    cursor: tuple | None = None
    with db.engine.connect() as conn:
        holidays = frozenset(conn.scalars(select(Holiday.day)))
        board = _Board.load(conn)
        conn.rollback()  # end the reads' implicit transaction; each batch has its own
        while True:
            with conn.begin():
                if conn.dialect.name == "sqlite" and not dry_run:
                    # Take the write lock before reading: a second process then waits for this batch
                    # and reads its result, instead of failing on a stale snapshot when it writes.
                    conn.exec_driver_sql("UPDATE tickets SET id = id WHERE 0")
                lock = conn.dialect.name == "postgresql" and not dry_run
                rows = conn.execute(due_query(now, batch_size, cursor, lock)).all()
                if not rows:
                    break
                cursor = (rows[-1].recurrence_due_at, rows[-1].id)
                emails = _process_batch(conn, rows, now, holidays, board, totals, dry_run)
                if run_id is not None and not dry_run:
                    conn.execute(update(run_rows).where(run_rows.c.id == run_id).values(
                        total_processed=totals.processed, total_created=totals.created,
                        total_skipped=totals.skipped, missed=totals.missed, ended=totals.ended))
            outbox.enqueue(emails)  # after the commit: the rows are there for the send job
            if progress:
                progress(totals)
    return totals


def _process_batch(conn: Connection, rows: list, now: datetime, holidays: frozenset[date], board: _Board,
                   totals: Totals, dry_run: bool) -> list[int]:
    """One batch in the caller's transaction; returns the ids of the outbox rows it wrote."""
    previous = _previous_occurrences(conn, [r.id for r in rows if r.recurrence_open_policy != "always"])
    new_tickets, advances, to_close = [], [], {}
    for row in rows:
        lead = timedelta(hours=row.recurrence_lead_hours)
        p = plan(Series.of(row, holidays), row.next_occurrence, row.recurrence_position, lead, now,
                 row.recurrence_catch_up)
        totals.processed += 1
        totals.missed += p.missed
        create = p.create
        prev = previous.get(row.id)
        prev_open = prev is not None and prev.done_at is None and not prev.is_archived
        if create and prev_open and row.recurrence_open_policy == "skip_open":
            create = []
        elif create and prev_open and row.recurrence_open_policy == "close_previous":
            to_close[row.id] = prev
        totals.skipped += p.due - len(create)
        if p.next_occurrence is None:
            totals.ended += 1
        advances.append((row.id, p.next_occurrence, p.next_occurrence - lead if p.next_occurrence else None,
                         p.position))
        for when in create:
            title = render_title(row.title, when, row.recurrence_time_zone)
            if dry_run:
                totals.planned.append((row.id, title, when))
                continue
            new_tickets.append({
                "title": title, "description": row.description, "priority": row.priority, "category": row.category,
                "assignee_id": row.assignee_id, "requester_email": row.requester_email, "template_id": row.id,
                "occurrence_at": when,
            })
    if dry_run:
        return []
    if new_tickets and board.first is None:
        raise RuntimeError("the board has no columns to open recurring tickets in")
    first = board.first
    created = bulk.insert_occurrences(conn, new_tickets, first, now if first and first.is_done_column else None,
                                      now) if new_tickets else []
    totals.created += len(created)
    attachments.link_from_templates(conn, [c[0] for c in created], now)
    totals.skipped += len(new_tickets) - len(created)  # already opened by an earlier pass
    closing = [to_close[template_id] for _, template_id, _ in created if template_id in to_close]
    bulk.insert_events(conn, _close(conn, closing, board, now), now)
    bulk.advance_templates(conn, advances, now)
    assignees = {row.id: row.assignee_id for row in rows if row.assignee_id}
    priorities = {row.id: PRIORITIES.get(row.priority, "normal") for row in rows}
    return _tell_assignees(conn, [c for c in created if c[1] in assignees], assignees, priorities)


def _tell_assignees(conn: Connection, created: list, assignees: dict[int, int],
                    priorities: dict[int, str]) -> list[int]:
    """An email to the assignee of each new occurrence, in the batch's transaction (so exactly once)."""
    if not created:
        return []
    found = conn.execute(select(User.id, User.email, User.time_zone).where(
        User.id.in_(set(assignees.values())), User.active.is_(True), User.notify_assigned.is_(True)))
    # Each email in its recipient's zone, read here: the outbox's own look-up would use another connection.
    default_zone = current_app.config["TIME_ZONE"]
    users = {uid: (email, zone if is_known_zone(zone) else default_zone) for uid, email, zone in found}
    rows = []
    for ticket_id, template_id, title in created:
        email, zone = users.get(assignees[template_id], (None, None))
        if email is None:
            continue
        ticket = SimpleNamespace(id=ticket_id, title=title, priority_name=priorities[template_id])
        rows.append(outbox.rendered("ticket_assigned", email, f"{refs.subject_tag(ticket_id)} Assigned to you: {title}",
                                    "ticket_assigned", ticket_id=ticket_id, ticket=ticket,
                                    time_zone=zone,
                                    by=f"the recurring ticket #{template_id}"))
    return outbox.insert_rows(conn, rows)


def _close(conn: Connection, previous: list, board: _Board, now: datetime) -> list[tuple]:
    """Move each still-open previous occurrence to the done column (or archive it if there is none)."""
    if not previous:
        return []
    ids = list({p.id for p in previous})
    if board.done is not None:
        conn.execute(update(tickets).where(tickets.c.id.in_(ids))
                     .values(column_id=board.done.id, done_at=now, updated_at=now))
        return [(p.id, "moved", {"column": [board.names.get(p.column_id), board.done.name]}) for p in previous]
    conn.execute(update(tickets).where(tickets.c.id.in_(ids)).values(is_archived=True, archived_at=now,
                                                                      updated_at=now))
    return [(p.id, "archived", {"archived": [False, True]}) for p in previous]
