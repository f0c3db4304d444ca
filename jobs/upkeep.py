"""The runtime's own upkeep: keep the job audit and RQ's failed registries from growing without end, and
settle stuck runs (the periodic tasks cleanup_stuck_runs, purge_job_runs and cleanup_failed_jobs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError

from itsm.dbtypes import utcnow
from itsm.extensions import db, redis_client
from jobs import registry
from jobs.connection import get_queue
from jobs.models import JobRun
from jobs.task import DEFAULT_TIME_LIMIT, task

runs = JobRun.__table__
PURGE_BATCH = 5000


def mark_stuck_runs_lost(now: datetime | None = None) -> int:
    """Runs "running" for more than twice their task's hard time limit become "lost", with the reason.

    The worker's own watchdog catches a dead process within seconds; this catches the rest
    (a machine that vanished, a worker killed with its supervisor)."""
    now = now or utcnow()
    known = registry.all_tasks()
    lost = 0
    with db.engine.begin() as conn:
        names = conn.scalars(select(runs.c.task_name).where(runs.c.status == "running").distinct()).all()
        for name in names:
            limit = known[name].time_limit if name in known else DEFAULT_TIME_LIMIT
            reason = (f"still running after {2 * limit} s, twice its time limit of {limit} s: "
                      "its worker is gone")
            lost += conn.execute(
                update(runs).where(runs.c.task_name == name, runs.c.status == "running",
                                   runs.c.started_at < now - timedelta(seconds=2 * limit))
                .values(status="lost", finished_at=now, error_type="WorkerLost", error_message=reason)).rowcount
    return lost


def purge_old_runs(now: datetime | None = None, batch: int = PURGE_BATCH) -> int:
    """Delete audit rows older than JOB_RUN_RETENTION_DAYS, a batch per transaction (short locks)."""
    cutoff = (now or utcnow()) - timedelta(days=current_app.config["JOB_RUN_RETENTION_DAYS"])
    deleted = 0
    while True:
        with db.engine.begin() as conn:
            ids = select(runs.c.id).where(runs.c.created_at < cutoff).order_by(runs.c.id).limit(batch)
            count = conn.execute(delete(runs).where(runs.c.id.in_(ids.scalar_subquery()))).rowcount
        deleted += count
        if count < batch:
            return deleted


def clean_failed_registries(now: datetime | None = None) -> int:
    """Remove failed jobs that ended more than JOB_RUN_RETENTION_DAYS ago (and entries whose job is gone)."""
    cutoff = (now or utcnow()) - timedelta(days=current_app.config["JOB_RUN_RETENTION_DAYS"])
    connection = redis_client()
    removed = 0
    for name in current_app.config["JOBS_QUEUES"]:
        failed = FailedJobRegistry(queue=get_queue(name, connection))
        ids = failed.get_job_ids()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for job_id, job in zip(chunk, Job.fetch_many(chunk, connection=connection), strict=True):
                if job is None:
                    failed.remove(job_id)
                    removed += 1
                elif job.ended_at is not None and _aware(job.ended_at) < cutoff:
                    failed.remove(job, delete_job=True)
                    removed += 1
    return removed


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # RQ keeps naive UTC


@task(name="cleanup_stuck_runs", queue="high", max_retries=2, time_limit=300)
def cleanup_stuck_runs() -> dict:
    """Runs still "running" after twice their task's hard time limit lost their worker: mark them lost."""
    return {"lost": mark_stuck_runs_lost()}


@task(name="purge_job_runs", queue="low", autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3,
      time_limit=3600, soft_time_limit=3500)
def purge_job_runs() -> dict:
    """Remove audit rows older than JOB_RUN_RETENTION_DAYS, in batches."""
    return {"deleted": purge_old_runs()}


@task(name="cleanup_failed_jobs", queue="low", max_retries=2, time_limit=1800, soft_time_limit=1700)
def cleanup_failed_jobs() -> dict:
    """Remove RQ failed-registry entries older than JOB_RUN_RETENTION_DAYS."""
    return {"removed": clean_failed_registries()}
