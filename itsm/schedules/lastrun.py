"""A periodic task's last run, one definition for every page, ``flask schedules list`` and the emails.

The last run is the task's latest attempt, whatever started it (a tick, *Run now*, the CLI, the code):
the newest row of the job audit for its task name, or the tick a worker has claimed but not written to
the audit yet (a short job writes its row when it ends). Read for all tasks at once, in two queries:
one index probe of (task_name, created_at, id) per task name, and one of the firings' (task, tick) key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select

from itsm.extensions import db
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from jobs.models import JobRun

WEEK = timedelta(days=7)
FINAL = ("succeeded", "failed", "lost")


@dataclass(frozen=True)
class LastRun:
    at: datetime
    status: str | None  # None: a claim older than the firing records (only its time is known)
    run: JobRun | None = None  # its audit row, once written


def newest_runs(names: set[str] | list[str]) -> dict[str, JobRun]:
    """The newest audit row of each task name, in one query (a backward index probe per name)."""
    if not names:
        return {}
    inner = db.aliased(JobRun)
    newest_id = (select(inner.id).where(inner.task_name == PeriodicTask.task)
                 .order_by(inner.created_at.desc(), inner.id.desc()).limit(1).correlate(PeriodicTask)
                 .scalar_subquery())
    ids = select(newest_id).where(PeriodicTask.task.in_(sorted(names))).distinct()
    return {r.task_name: r for r in db.session.scalars(select(JobRun).where(JobRun.id.in_(ids)))}


def newest_firings(ids: list[int]) -> dict[int, ScheduleFiring]:
    if not ids:
        return {}
    latest = (select(ScheduleFiring.periodic_task_id, func.max(ScheduleFiring.tick_at).label("tick"))
              .where(ScheduleFiring.periodic_task_id.in_(ids)).group_by(ScheduleFiring.periodic_task_id).subquery())
    rows = db.session.scalars(select(ScheduleFiring).join(
        latest, (ScheduleFiring.periodic_task_id == latest.c.periodic_task_id)
        & (ScheduleFiring.tick_at == latest.c.tick)))
    return {f.periodic_task_id: f for f in rows}


def combine(row: PeriodicTask, run: JobRun | None, firing: ScheduleFiring | None) -> LastRun | None:
    """The newer of the audit's newest row and the schedule's newest claimed tick."""
    if firing is not None:
        claim = (firing.claimed_at, firing.status, firing.job_id)
    elif row.last_run_at is not None:
        claim = (row.last_run_at, None, None)
    else:
        claim = None
    if claim is not None and (run is None or (claim[2] != run.job_id and claim[0] > run.created_at)):
        return LastRun(claim[0], claim[1])
    return LastRun(run.created_at, run.status, run) if run is not None else None


def last_runs(rows: list[PeriodicTask]) -> dict[int, LastRun | None]:
    """Every row's last run, by periodic task id."""
    runs = newest_runs({r.task for r in rows})
    firings = newest_firings([r.id for r in rows])
    return {r.id: combine(r, runs.get(r.task), firings.get(r.id)) for r in rows}


def last_run(row: PeriodicTask) -> LastRun | None:
    return last_runs([row])[row.id]


def week_stats(names: list[str] | set[str], since: datetime) -> dict[str, tuple[int, int]]:
    """Finished runs and successes of each task name since ``since`` (a bounded index range each)."""
    if not names:
        return {}
    rows = db.session.execute(
        select(JobRun.task_name, func.count(), func.sum(case((JobRun.status == "succeeded", 1), else_=0)))
        .where(JobRun.task_name.in_(sorted(names)), JobRun.created_at >= since, JobRun.status.in_(FINAL))
        .group_by(JobRun.task_name)).all()
    return {name: (runs, int(ok or 0)) for name, runs, ok in rows}
