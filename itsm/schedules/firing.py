"""Exactly once per tick: a periodic firing is claimed in the database before its body runs.

The claim is a row keyed by (periodic task, tick). A second copy of the same tick (a
second scheduler, a lapsed lock, a re-added entry) finds the row taken and becomes a
no-op recorded as skipped. A retry of the same job may take its own claim back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.schedules.models import PeriodicTask, ScheduleFiring

FIRINGS = ScheduleFiring.__table__
TASKS = PeriodicTask.__table__


def key_of(meta: dict | None) -> tuple[int, datetime] | None:
    """(periodic task, tick) from a job's meta; None for a job the scheduler did not enqueue."""
    periodic = (meta or {}).get("periodic") if isinstance(meta, dict) else None
    if not periodic:
        return None
    return int(periodic["id"]), datetime.fromisoformat(periodic["tick"])


def _insert():
    return pg_insert(FIRINGS) if db.engine.dialect.name == "postgresql" else sqlite_insert(FIRINGS)


def claim(task_id: int, tick: datetime, job_id: str, attempt: int) -> str | None:
    """Claim this tick for this job. Returns None to go ahead, or why the firing is skipped."""
    now = utcnow()
    with db.engine.begin() as conn:
        row = conn.execute(select(TASKS.c.expire_seconds, TASKS.c.overlap_policy, TASKS.c.one_off)
                           .where(TASKS.c.id == task_id)).first()
        if row is None:
            return "its periodic task no longer exists"
        skip_reason = None
        if row.expire_seconds is not None and (now - tick).total_seconds() > row.expire_seconds:
            skip_reason = f"expired: not started within {row.expire_seconds}s of its time"
        elif row.overlap_policy == "skip" and conn.execute(
                select(FIRINGS.c.id).where(FIRINGS.c.periodic_task_id == task_id, FIRINGS.c.tick_at < tick,
                                           FIRINGS.c.status.in_(("running", "retrying"))).limit(1)).first():
            skip_reason = "the previous run is still running (overlap policy: skip)"
        status = "skipped" if skip_reason else "running"
        inserted = conn.execute(
            _insert().values(periodic_task_id=task_id, tick_at=tick, job_id=job_id, status=status, attempt=attempt,
                             claimed_at=now, reason=skip_reason,
                             finished_at=now if skip_reason else None)
            .on_conflict_do_nothing(index_elements=["periodic_task_id", "tick_at"])
            .returning(FIRINGS.c.id)).first()
        if inserted is None:
            # Taken: only a retry of the same job, after its earlier attempt ended, may continue.
            taken = conn.execute(
                update(FIRINGS).where(and_(FIRINGS.c.periodic_task_id == task_id, FIRINGS.c.tick_at == tick,
                                           FIRINGS.c.job_id == job_id,
                                           FIRINGS.c.status.in_(("retrying", "lost"))))
                .values(status="running", attempt=attempt, finished_at=None)).rowcount
            return None if taken else "this tick already fired (duplicate enqueue)"
        if skip_reason:
            return skip_reason
        values = {"last_run_at": now, "total_run_count": TASKS.c.total_run_count + 1}
        if row.one_off:
            values["enabled"] = False  # a one-off is done once its firing is claimed
        conn.execute(update(TASKS).where(TASKS.c.id == task_id).values(**values))
    return None


def finish(task_id: int, tick: datetime, job_id: str, status: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(FIRINGS).where(and_(FIRINGS.c.periodic_task_id == task_id, FIRINGS.c.tick_at == tick,
                                                FIRINGS.c.job_id == job_id))
                     .values(status=status, finished_at=None if status == "retrying" else utcnow()))


def exists(task_id: int, tick: datetime) -> bool:
    with db.engine.connect() as conn:
        return conn.execute(select(FIRINGS.c.id).where(FIRINGS.c.periodic_task_id == task_id,
                                                       FIRINGS.c.tick_at == tick)).first() is not None


class AttemptClaims:
    """The job runtime's hook (``jobs.hooks.AttemptClaims``): every attempt of a periodic job claims its tick."""

    key = staticmethod(key_of)

    @staticmethod
    def claim(key: tuple[int, datetime], job_id: str, attempt: int) -> str | None:
        return claim(*key, job_id, attempt)

    @staticmethod
    def finish(key: tuple[int, datetime], job_id: str, status: str) -> None:
        finish(*key, job_id, status)
