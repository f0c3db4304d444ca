"""Writes JobRun rows on their own connection, so the audit never rides on (or rolls back with)
the job's own transaction. One row per attempt, keyed by (job_id, attempt)."""

from __future__ import annotations

import json
import logging
import traceback as tb
from datetime import datetime

from sqlalchemy import and_, bindparam, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from itsm.dbtypes import utcnow
from jobs import dbconn
from jobs.models import JobRun

TABLE = JobRun.__table__
log = logging.getLogger("jobs.audit")
MAX_TRACEBACK = 8000
MAX_MESSAGE = 2000
MAX_RESULT = 4000


def summarize_args(args, kwargs) -> str:
    parts = [json.dumps(a, default=str) for a in args]
    parts += [f"{k}={json.dumps(v, default=str)}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= 500 else text[:497] + "..."


def result_summary(value):
    """A JSON-able summary of a job's return value, small enough for the audit."""
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError):
        return {"repr": repr(value)[:MAX_RESULT]}
    if len(encoded) > MAX_RESULT:
        return {"truncated": encoded[:MAX_RESULT]}
    return value


def error_fields(exc: BaseException) -> dict:
    text = "".join(tb.format_exception(exc))
    if len(text) > MAX_TRACEBACK:
        text = "...\n" + text[-MAX_TRACEBACK:]  # the end of a traceback is the useful part
    return {"error_type": type(exc).__name__, "error_message": str(exc)[:MAX_MESSAGE], "traceback": text}


def record_enqueued(rows: list[dict]) -> None:
    """Queued rows for new jobs; a worker that got there first already wrote the row, and only its
    queue time is added."""
    if not rows:
        return
    now = utcnow()
    for row in rows:
        row.setdefault("created_at", now)
        row.setdefault("enqueued_at", now)
        row.setdefault("status", "queued")
        row.setdefault("scheduled_for", None)
        row.setdefault("payload", None)
        row.setdefault("retries", None)
    rows = [{c: row.get(c) for c in QUEUED_COLUMNS} for row in rows]
    try:
        dbconn.write(lambda conn: conn.execute(_statement("queued"), rows))
    except SQLAlchemyError:
        # The jobs are already on the queue; the worker writes their rows when they start.
        log.exception("could not record %d queued job(s) in the audit", len(rows))


OUTCOME_COLUMNS = ("status", "started_at", "finished_at", "duration_seconds", "worker", "queue", "error_type",
                   "error_message", "traceback", "result")
_statements: dict[str, object] = {}


ALL_COLUMNS = ("job_id", "attempt", "task_name", "queue", "args_summary", "status", "created_at", "started_at",
               "finished_at", "duration_seconds", "worker", "error_type", "error_message", "traceback", "result")
# A queued row also keeps what re-enqueues it if Redis loses the job (jobs.recovery).
QUEUED_COLUMNS = ("job_id", "attempt", "task_name", "queue", "args_summary", "status", "created_at", "enqueued_at",
                  "scheduled_for", "payload", "retries")


def _upsert(columns: tuple[str, ...], action: str):
    """INSERT ... ON CONFLICT, written out: PostgreSQL and SQLite share this syntax, and unlike the
    dialect-specific insert() constructs a text() statement is compiled once and cached."""
    types = {c.name: c.type for c in TABLE.columns}
    names, values = ", ".join(columns), ", ".join(":" + c for c in columns)
    sql = f"INSERT INTO job_runs ({names}) VALUES ({values}) ON CONFLICT (job_id, attempt) {action}"  # noqa: S608
    return text(sql).bindparams(*(bindparam(c, type_=types[c]) for c in columns))


def _set(columns: tuple[str, ...]) -> str:
    return "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in columns)


def _statement(kind: str):
    if kind not in _statements:
        if kind == "running":  # shows a job that runs for a while; never overwrites an outcome
            stmt = _upsert(ALL_COLUMNS, _set(("status", "started_at", "worker", "queue"))
                           + " WHERE job_runs.status = 'queued'")
        elif kind == "outcome":
            stmt = _upsert(ALL_COLUMNS, _set(OUTCOME_COLUMNS))
        elif kind == "lost":
            stmt = _upsert(ALL_COLUMNS, _set(("status", "finished_at", "error_type", "error_message"))
                           + " WHERE job_runs.status IN ('queued', 'running')")
        elif kind == "queued":
            # A worker that started the job first wrote the row; it still gets the time it was queued.
            stmt = _upsert(QUEUED_COLUMNS, "DO UPDATE SET enqueued_at = excluded.enqueued_at, "
                           "scheduled_for = excluded.scheduled_for WHERE job_runs.enqueued_at IS NULL")
        else:  # "earlier_lost"
            stmt = (update(TABLE).where(TABLE.c.job_id == bindparam("b_job_id"),
                                        TABLE.c.attempt < bindparam("b_attempt"), TABLE.c.status == "running")
                    .values(status="lost", finished_at=bindparam("b_finished"), error_type="WorkerLost",
                            error_message="The worker running this attempt stopped before it finished."))
        _statements[kind] = stmt
    return _statements[kind]


def row(*, job_id: str, attempt: int, task_name: str, queue: str, args_summary: str, status: str,
         started_at: datetime | None = None, finished_at: datetime | None = None, worker: str | None = None,
         result=None, exc: BaseException | None = None, error_message: str | None = None) -> dict:
    row = {"job_id": job_id, "attempt": attempt, "task_name": task_name, "queue": queue,
           "args_summary": args_summary, "status": status, "created_at": started_at or utcnow(),
           "started_at": started_at, "finished_at": finished_at, "worker": worker,
           "duration_seconds": (finished_at - started_at).total_seconds() if started_at and finished_at else None,
           "result": None if result is None else result_summary(result),
           "error_type": None, "error_message": error_message, "traceback": None}
    if exc is not None:
        row.update(error_fields(exc))
    return row


def record_running(row: dict) -> None:
    """The attempt is still running: say so (the watchdog calls this once a job runs for a while)."""
    dbconn.write(lambda conn: conn.execute(_statement("running"), {**row, "status": "running"}))


def record_outcome(row: dict, next_attempt: dict | None = None) -> None:
    """One write per attempt in the common case: its final state, whatever was written before.
    ``next_attempt`` is the queued row of a scheduled retry, written in the same transaction."""
    def do(conn):
        if row["attempt"] > 1:
            # An earlier attempt still "running" means its worker died under it.
            conn.execute(_statement("earlier_lost"), {"b_job_id": row["job_id"], "b_attempt": row["attempt"],
                                                      "b_finished": row["started_at"] or utcnow()})
        conn.execute(_statement("outcome"), row)
        if next_attempt is not None:
            conn.execute(_statement("queued"), {c: next_attempt.get(c) for c in QUEUED_COLUMNS})

    dbconn.write(do)


ENDED = ("succeeded", "failed", "skipped")  # a job whose attempt ended so runs no further attempt
FINAL_LOSSES = ("JobLost", "Purged")  # lost for good (a lost worker's attempt may run again: WorkerLost)


def already_ran(job_id: str, attempt: int, retry: bool) -> tuple[str, bool] | None:
    """Why this attempt must not run, and whether it has a row of its own; None when it may run. It must not
    when its own row is past queued (it ran, or runs elsewhere), or, for an automatic retry, when the attempt
    before it ended the job. Redis can hand out a job again that it forgot had run (the writes a failover's
    promoted replica never received), or twice (a duplicate enqueue); the audit knows."""
    def read(conn):
        return conn.execute(select(TABLE.c.attempt, TABLE.c.status, TABLE.c.error_type)
                            .where(TABLE.c.job_id == job_id, TABLE.c.attempt >= attempt - 1)).all()

    rows = dbconn.write(read)
    own = [r for r in rows if r.attempt == attempt]
    if own and own[0].status != "queued":
        return f"attempt {attempt} is already {own[0].status} in the audit", True
    for row in rows:
        if retry and row.attempt == attempt - 1 and _ended(row):
            return f"the job already ended ({row.status}) on attempt {attempt - 1}", bool(own)
    return None


def _ended(row) -> bool:
    return row.status in ENDED or (row.status == "lost" and row.error_type in FINAL_LOSSES)


def outcome(job_id: str, attempt: int) -> str | None:
    """The attempt's recorded outcome (succeeded, failed, retrying, skipped, lost for good), or None while
    it has none (queued, running, no row yet)."""
    def read(conn):
        return conn.execute(select(TABLE.c.status, TABLE.c.error_type)
                            .where(TABLE.c.job_id == job_id, TABLE.c.attempt == attempt)).first()

    row = dbconn.write(read)
    return row.status if row is not None and (_ended(row) or row.status == "retrying") else None


def record_lost(*, job_id: str, attempt: int, task_name: str, queue: str, reason: str) -> None:
    """Mark an attempt lost (its worker died), whether or not it had written its row yet."""
    now = utcnow()
    lost = row(job_id=job_id, attempt=attempt, task_name=task_name, queue=queue, args_summary="", status="lost",
                finished_at=now, error_message=reason)
    lost.update(created_at=now, error_type="WorkerLost")

    def do(conn):
        conn.execute(_statement("lost"), lost)
        # Older queued or running rows of the same job (written before the attempt count moved on).
        conn.execute(update(TABLE).where(and_(TABLE.c.job_id == job_id, TABLE.c.attempt < attempt,
                                              TABLE.c.status.in_(("queued", "running"))))
                     .values(status="lost", finished_at=now, error_type="WorkerLost", error_message=reason))

    dbconn.write(do)


def record_purged(job_ids: list[str]) -> None:
    """Queued rows of jobs deleted on purpose (``flask worker --purge``) end here, with the reason."""
    now = utcnow()
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start:start + 500]
        dbconn.write(lambda conn, chunk=chunk: conn.execute(
            update(TABLE).where(TABLE.c.job_id.in_(chunk), TABLE.c.status == "queued")
            .values(status="lost", finished_at=now, error_type="Purged",
                    error_message="Deleted from its queue by flask worker --purge.")))


def payload(args, kwargs, periodic: dict | None = None) -> dict:
    """The call a queued row keeps, to enqueue it again: arguments, and a periodic firing's tick."""
    call = {"args": list(args), "kwargs": dict(kwargs)}
    if periodic:
        call["periodic"] = periodic
    return call


def queued_row(*, job_id: str, attempt: int, task_name: str, queue: str, args_summary: str,
               scheduled_for: datetime | None, call: dict | None = None, retries: int | None = None) -> dict:
    now = utcnow()
    return {"job_id": job_id, "attempt": attempt, "task_name": task_name, "queue": queue,
            "args_summary": args_summary, "status": "queued", "created_at": now, "enqueued_at": now,
            "scheduled_for": scheduled_for, "payload": call, "retries": retries}
