"""The processor's three bulk writes, one statement each per batch.

PostgreSQL gets each batch as a few arrays unnested server-side: one short statement
whatever the batch size, instead of thousands of placeholders the driver must parse
(psycopg spent most of a batch splitting an insertmanyvalues query). SQLite keeps
SQLAlchemy's executemany, which is what its in-process driver is fast at.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from itsm.dbtypes import UTCDateTime
from itsm.recurring.models import TicketRecurrence
from itsm.tickets.models import Ticket, TicketEvent

tickets = Ticket.__table__
events = TicketEvent.__table__
recurrences = TicketRecurrence.__table__

# Copied from the template per occurrence; the rest is the same for the whole batch.
PER_ROW = ("title", "description", "priority", "category", "assignee_id", "requester_email", "template_id",
           "occurrence_at")
_PG_TYPES = {"title": "text", "description": "text", "priority": "smallint", "category": "text",
             "assignee_id": "int", "requester_email": "text", "template_id": "int", "occurrence_at": "timestamptz"}

# One statement per batch: unnest the arrays, insert what is not there yet, and write each new
# ticket's "created" history event from the inserted rows (so no event data is sent at all).
_PG_INSERT = f"""
    WITH opened AS (
        INSERT INTO tickets ({", ".join(PER_ROW)}, column_id, done_at, created_at, updated_at, is_archived,
            is_recurring)
        SELECT {", ".join(PER_ROW)}, %(column_id)s, %(done_at)s, %(now)s, %(now)s, false, false
        FROM unnest({", ".join(f"%({c})b::{t}[]" for c, t in _PG_TYPES.items())}) AS u({", ".join(PER_ROW)})
        ON CONFLICT (template_id, occurrence_at) DO NOTHING
        RETURNING id, template_id, title
    ), history AS (
        INSERT INTO ticket_events (ticket_id, actor_id, kind, changes, created_at)
        SELECT id, NULL, 'created', json_build_object(
            'title', json_build_array(NULL, title), 'column', json_build_array(NULL, %(column_name)s::text),
            'template', json_build_array(NULL, '#' || template_id)), %(now)s
        FROM opened
    )
    SELECT id, template_id, title FROM opened
"""  # noqa: S608 -- built from the constant column names above, no input
_PG_EVENTS = """
    INSERT INTO ticket_events (ticket_id, actor_id, kind, changes, created_at)
    SELECT ticket_id, NULL, kind, changes::json, %(now)s
    FROM unnest(%(ticket_ids)b::int[], %(kinds)b::text[], %(changes)b::text[]) AS u(ticket_id, kind, changes)
"""
_PG_ADVANCE = """
    UPDATE ticket_recurrences AS r SET next_occurrence = u.next_occurrence, recurrence_due_at = u.due_at,
        recurrence_position = u.position, recurrence_last_run_at = %(now)s
    FROM unnest(%(ids)b::int[], %(next)b::timestamptz[], %(due)b::timestamptz[], %(positions)b::int[])
        AS u(id, next_occurrence, due_at, position)
    WHERE r.ticket_id = u.id
"""


def _pg_execute(conn: Connection, sql: str, params: dict) -> list:
    """Run on the transaction's own psycopg connection. The arrays are sent in binary (``%b``):
    in text form psycopg quotes and escapes every element, which cost more than the inserts."""
    with conn.connection.driver_connection.cursor(binary=True) as cursor:
        cursor.execute(sql, params, prepare=False)
        return cursor.fetchall() if cursor.description else []


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_occurrences(conn: Connection, rows: list[dict], column, done_at: datetime | None,
                       now: datetime) -> list[tuple[int, int, str]]:
    """Insert the tickets into ``column`` (a row with id and name), skipping any (template, time)
    already there, with their "created" events; returns (id, template_id, title) of those inserted."""
    if not rows:
        return []
    if _pg(conn):
        arrays = {c: [r[c] for r in rows] for c in PER_ROW}
        return _pg_execute(conn, _PG_INSERT, {**arrays, "column_id": column.id, "column_name": column.name,
                                              "done_at": done_at, "now": now})
    stmt = (sqlite_insert(tickets).on_conflict_do_nothing(index_elements=["template_id", "occurrence_at"])
            .returning(tickets.c.id, tickets.c.template_id, tickets.c.title))
    full = [{**r, "column_id": column.id, "done_at": done_at, "created_at": now, "updated_at": now} for r in rows]
    created = [tuple(row) for row in conn.execute(stmt, full)]
    insert_events(conn, [(tid, "created", {"title": [None, title], "column": [None, column.name],
                                           "template": [None, f"#{template_id}"]})
                         for tid, template_id, title in created], now)
    return created


def insert_events(conn: Connection, history: list[tuple[int, str, dict]], now: datetime) -> None:
    """System history events: (ticket_id, kind, changes)."""
    if not history:
        return
    if _pg(conn):
        _pg_execute(conn, _PG_EVENTS, {"ticket_ids": [h[0] for h in history], "kinds": [h[1] for h in history],
                                  "changes": [json.dumps(h[2]) for h in history], "now": now})
        return
    conn.execute(events.insert(), [{"ticket_id": tid, "actor_id": None, "kind": kind, "changes": changes,
                                    "created_at": now} for tid, kind, changes in history])


def advance_templates(conn: Connection, advances: list[tuple[int, datetime | None, datetime | None, int]],
                      now: datetime) -> None:
    """Move each template on: (id, next_occurrence, due_at, position)."""
    if not advances:
        return
    if _pg(conn):
        _pg_execute(conn, _PG_ADVANCE, {"ids": [a[0] for a in advances], "next": [a[1] for a in advances],
                                   "due": [a[2] for a in advances], "positions": [a[3] for a in advances],
                                   "now": now})
        return
    conn.execute(
        update(recurrences).where(recurrences.c.ticket_id == bindparam("b_id")).values(
            next_occurrence=bindparam("b_next", type_=UTCDateTime()),
            recurrence_due_at=bindparam("b_due", type_=UTCDateTime()),
            recurrence_position=bindparam("b_position"), recurrence_last_run_at=now),
        [{"b_id": i, "b_next": n, "b_due": d, "b_position": p} for i, n, d, p in advances])
