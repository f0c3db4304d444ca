"""Writes JobRun rows on their own connection, so the audit never rides on (or rolls back with)
the job's own transaction. One row per attempt, keyed by (job_id, attempt)."""

from __future__ import annotations

import json
import logging
import traceback as tb
from datetime import datetime

from sqlalchemy import and_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from itsm.automation.models import JobRun
from itsm.dbtypes import utcnow
from itsm.extensions import db

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


def error_fields(exc: BaseException, with_traceback: bool = True) -> dict:
    text = "".join(tb.format_exception(exc)) if with_traceback else None
    if text and len(text) > MAX_TRACEBACK:
        text = "...\n" + text[-MAX_TRACEBACK:]  # the end of a traceback is the useful part
    return {"error_type": type(exc).__name__, "error_message": str(exc)[:MAX_MESSAGE], "traceback": text}


def _insert():
    return pg_insert(TABLE) if db.engine.dialect.name == "postgresql" else sqlite_insert(TABLE)


def record_enqueued(rows: list[dict]) -> None:
    """Queued rows for new jobs; a worker that got there first already wrote the row."""
    if not rows:
        return
    now = utcnow()
    for row in rows:
        row.setdefault("created_at", now)
        row.setdefault("enqueued_at", now)
        row.setdefault("status", "queued")
    try:
        with db.engine.begin() as conn:
            conn.execute(_insert().on_conflict_do_nothing(index_elements=["job_id", "attempt"]), rows)
    except SQLAlchemyError:
        # The jobs are already on the queue; the worker writes their rows when they start.
        log.exception("could not record %d queued job(s) in the audit", len(rows))


def record_start(*, job_id: str, attempt: int, task_name: str, queue: str, args_summary: str, worker: str | None,
                 started_at: datetime) -> None:
    values = {"job_id": job_id, "attempt": attempt, "task_name": task_name, "queue": queue,
              "args_summary": args_summary, "status": "running", "started_at": started_at, "worker": worker,
              "created_at": started_at}
    stmt = _insert().values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "attempt"],
        set_={"status": "running", "started_at": started_at, "worker": worker, "queue": queue},
    )
    with db.engine.begin() as conn:
        if attempt > 1:
            # An earlier attempt still "running" means its worker died under it.
            conn.execute(update(TABLE).where(and_(TABLE.c.job_id == job_id, TABLE.c.attempt < attempt,
                                                  TABLE.c.status == "running"))
                         .values(status="lost", finished_at=started_at, error_type="WorkerLost",
                                 error_message="The worker running this attempt stopped before it finished."))
        conn.execute(stmt)


def _finish(conn, job_id: str, attempt: int, **values) -> None:
    conn.execute(update(TABLE).where(and_(TABLE.c.job_id == job_id, TABLE.c.attempt == attempt)).values(**values))


def record_success(job_id: str, attempt: int, started_at: datetime, result) -> None:
    finished = utcnow()
    with db.engine.begin() as conn:
        _finish(conn, job_id, attempt, status="succeeded", finished_at=finished,
                duration_seconds=(finished - started_at).total_seconds(), result=result_summary(result))


def record_retry(*, job_id: str, attempt: int, started_at: datetime, exc: BaseException | None, task_name: str,
                 queue: str, args_summary: str, retry_at: datetime) -> None:
    finished = utcnow()
    errors = error_fields(exc) if exc is not None else {"error_message": "retry requested"}
    with db.engine.begin() as conn:
        _finish(conn, job_id, attempt, status="retrying", finished_at=finished,
                duration_seconds=(finished - started_at).total_seconds(), **errors)
        conn.execute(_insert().values(
            job_id=job_id, attempt=attempt + 1, task_name=task_name, queue=queue, args_summary=args_summary,
            status="queued", created_at=finished, enqueued_at=finished, scheduled_for=retry_at,
        ).on_conflict_do_nothing(index_elements=["job_id", "attempt"]))


def record_failure(job_id: str, attempt: int, started_at: datetime | None, exc: BaseException,
                   status: str = "failed") -> None:
    finished = utcnow()
    duration = (finished - started_at).total_seconds() if started_at else None
    with db.engine.begin() as conn:
        _finish(conn, job_id, attempt, status=status, finished_at=finished, duration_seconds=duration,
                **error_fields(exc))


def record_skipped(job_id: str, attempt: int, started_at: datetime, reason: str) -> None:
    with db.engine.begin() as conn:
        _finish(conn, job_id, attempt, status="skipped", finished_at=utcnow(), duration_seconds=0.0,
                error_message=reason)


def record_lost(job_id: str, reason: str) -> int:
    """Mark a job's running attempt lost (its worker died). Returns the number of rows changed."""
    with db.engine.begin() as conn:
        result = conn.execute(update(TABLE).where(and_(TABLE.c.job_id == job_id, TABLE.c.status == "running"))
                              .values(status="lost", finished_at=utcnow(), error_type="WorkerLost",
                                      error_message=reason))
    return result.rowcount
