"""Jobs that Redis lost: the job audit in the database is the durable record of what waits to run.

A queued JobRun row (a new job, one with a countdown or eta, a retry waiting for its time) keeps what
enqueues it again: the task, its arguments, queue, time and retries so far. When Redis loses its data
(FLUSHDB, a restart of a Redis that keeps nothing on disk, an eviction) the rows stay. A pass run by the
workers (one of them per JOBS_MAINTENANCE_SECONDS, under a Redis lock) looks at the queued rows older than
JOBS_LOST_GRACE_SECONDS whose RQ job no longer exists: a task with late acknowledgement (``acks_late``,
idempotent by contract) is enqueued again under the same job id, for its own time, with its attempt and
retry counts; any other task may not run twice, so its row is marked lost with the reason and its failure
hooks run. The rows are read in bounded ranges of the (status, created_at, id) index, a batch at a time
from a cursor kept in Redis, so the pass costs the same with a million audit rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from redis import Redis
from rq.job import JobStatus
from sqlalchemy import select, tuple_, update

from itsm.dbtypes import utcnow
from itsm.extensions import db
from jobs import hooks, registry, runtime
from jobs.connection import get_queue
from jobs.enqueue import job_options
from jobs.exceptions import JobLostError, UnknownTaskError
from jobs.models import JobRun

log = logging.getLogger("jobs.recovery")
runs = JobRun.__table__
LOCK_KEY = "itsm:jobs:recovery:lock"
CURSOR_KEY = "itsm:jobs:recovery:cursor"
BATCH = 500
MAX_ROWS = 5000  # per pass; the next pass carries on from the cursor
# A job that started just before Redis lost it still shows "queued" until its worker writes "running",
# one second in (jobs.worker.RUNNING_AFTER_SECONDS): a missing job is looked at again after this long.
SETTLE_SECONDS = 1.5
COLUMNS = (runs.c.id, runs.c.job_id, runs.c.attempt, runs.c.task_name, runs.c.queue, runs.c.args_summary,
           runs.c.created_at, runs.c.scheduled_for, runs.c.payload, runs.c.retries, runs.c.requeued_at)


@dataclass
class Recovered:
    requeued: int = 0
    lost: int = 0


def maybe_recover(app: Flask, connection: Redis, owner: str) -> Recovered | None:
    """From a worker's maintenance: the pass, unless another worker ran it within the interval."""
    interval = max(1, int(app.config["JOBS_MAINTENANCE_SECONDS"]))
    if not connection.set(LOCK_KEY, owner, nx=True, ex=interval):
        return None
    with app.app_context():
        try:
            found = recover_lost(connection)
        finally:
            db.session.remove()
    if found.requeued or found.lost:
        log.warning("Redis had lost %d queued job(s): %d enqueued again, %d marked lost",
                    found.requeued + found.lost, found.requeued, found.lost)
    return found


def recover_lost(connection: Redis, now: datetime | None = None, grace: float | None = None,
                 settle: float = SETTLE_SECONDS) -> Recovered:
    """One pass: queued rows older than the grace whose RQ job is gone are enqueued again or marked lost."""
    grace = max(1.0, float(current_app.config["JOBS_LOST_GRACE_SECONDS"])) if grace is None else grace
    cutoff = (now or utcnow()) - timedelta(seconds=grace)
    missing = _missing(connection, cutoff)
    if not missing:
        return Recovered()
    if settle:
        time.sleep(settle)
    # Still queued (not started meanwhile) and still gone from Redis.
    with db.engine.connect() as conn:
        rows = conn.execute(select(*COLUMNS).where(runs.c.id.in_([r.id for r in missing]),
                                                   runs.c.status == "queued")).all()
    rows = [r for r, gone in zip(rows, _gone(connection, rows), strict=True) if gone]
    found = Recovered()
    for row in rows:
        outcome = _recover(connection, row, utcnow(), cutoff)
        if outcome is not None:
            setattr(found, outcome, getattr(found, outcome) + 1)
    return found


def _missing(connection: Redis, cutoff: datetime) -> list:
    """Queued rows older than ``cutoff`` whose job Redis does not have, from the cursor on."""
    raw = connection.get(CURSOR_KEY)
    cursor = None
    if raw:
        stamp, _, row_id = raw.decode().partition("|")
        cursor = (datetime.fromisoformat(stamp), int(row_id))
    missing, seen = [], 0
    with db.engine.connect() as conn:
        while seen < MAX_ROWS:
            query = (select(*COLUMNS).where(runs.c.status == "queued", runs.c.created_at < cutoff)
                     .order_by(runs.c.created_at, runs.c.id).limit(BATCH))
            if cursor is not None:
                query = query.where(tuple_(runs.c.created_at, runs.c.id) > tuple_(*cursor))
            rows = conn.execute(query).all()
            seen += len(rows)
            missing += [r for r, gone in zip(rows, _gone(connection, rows), strict=True)
                        if gone and (r.requeued_at is None or r.requeued_at < cutoff)]
            if len(rows) < BATCH:
                cursor = None  # the end: the next pass starts again from the oldest
                break
            cursor = (rows[-1].created_at, rows[-1].id)
    if cursor is None:
        connection.delete(CURSOR_KEY)
    else:
        connection.set(CURSOR_KEY, f"{cursor[0].isoformat()}|{cursor[1]}")
    return missing


def _gone(connection: Redis, rows: list) -> list[bool]:
    if not rows:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for row in rows:
            pipe.exists(f"rq:job:{row.job_id}")
        return [not found for found in pipe.execute()]


def _recover(connection: Redis, row, now: datetime, cutoff: datetime) -> str | None:
    """Enqueue the row's job again ("requeued") or mark it lost ("lost"); None if another pass took it."""
    try:
        task = registry.get(row.task_name)
    except UnknownTaskError:
        task = None
    reason = "Redis lost this job before it ran (its RQ job no longer exists)"
    if task is None:
        return _lose(row, f"{reason}; its task {row.task_name!r} is unknown to this worker.", task, now)
    if row.payload is None:
        return _lose(row, f"{reason}; its audit row has no arguments to enqueue it again "
                          "(queued inline, or before this version).", task, now)
    if not task.acks_late:
        return _lose(row, f"{reason}; {task.name} does not acknowledge late (acks_late=False), so it may "
                          "not run twice and is not enqueued again.", task, now)
    # The claim: two passes at once (a lapsed lock) cannot both enqueue it.
    with db.engine.begin() as conn:
        claimed = conn.execute(update(runs).where(
            runs.c.id == row.id, runs.c.status == "queued",
            (runs.c.requeued_at.is_(None)) | (runs.c.requeued_at < cutoff))
            .values(requeued_at=now, enqueued_at=now)).rowcount
    if not claimed:
        return None
    _enqueue_again(connection, row, task, now)
    log.info("job %s[%s] attempt %d: enqueued again after Redis lost it", row.task_name, row.job_id, row.attempt)
    return "requeued"


def _enqueue_again(connection: Redis, row, task, now: datetime) -> None:
    args, kwargs = row.payload.get("args", []), row.payload.get("kwargs", {})
    queue = get_queue(row.queue, connection)
    meta = {"periodic": row.payload["periodic"]} if row.payload.get("periodic") else None
    when = row.scheduled_for if row.scheduled_for is not None and row.scheduled_for > now else None
    options = job_options(task, args, kwargs, row.job_id, row.args_summary)
    if when is not None:
        options["status"] = JobStatus.SCHEDULED
    job = queue.create_job(runtime.run, meta=meta, **options)
    done = row.attempt - 1
    with connection.pipeline() as pipe:
        if when is None:
            queue.enqueue_job(job, pipeline=pipe)
        else:  # RQ scores scheduled jobs in whole seconds, truncated: round up, never run early
            queue.schedule_job(job, when + timedelta(microseconds=-when.microsecond % 1_000_000), pipeline=pipe)
        # The attempt and retry counts go on from where they were (see jobs.runtime._begin_attempt).
        pipe.hset(job.key, mapping={runtime.ATTEMPT_FIELD: done,
                                    runtime.RETRY_BASE_FIELD: done - (row.retries or 0)})
        pipe.execute()


def _lose(row, reason: str, task, now: datetime) -> str | None:
    with db.engine.begin() as conn:
        changed = conn.execute(update(runs).where(runs.c.id == row.id, runs.c.status == "queued").values(
            status="lost", finished_at=now, error_type="JobLost", error_message=reason)).rowcount
    if not changed:
        return None
    log.error("job %s[%s] attempt %d lost: %s", row.task_name, row.job_id, row.attempt, reason)
    payload = row.payload or {}
    claims = hooks.claims
    periodic = claims.key({"periodic": payload.get("periodic")}) if claims is not None else None
    if periodic is not None:
        claims.finish(periodic, row.job_id, "lost")
    runtime.final_failure(task, row.task_name, row.job_id, JobLostError(reason), payload.get("args", []),
                          payload.get("kwargs", {}))
    return "lost"
