"""Housekeeping jobs: archive finished tickets, keep the job audit and RQ's failed registry tidy."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from jobs.task import task


@task(name="archive_done_tickets", queue="low", autoretry_for=(OperationalError,), retry_backoff=10,
      max_retries=3, time_limit=1800, soft_time_limit=1700)
def archive_done_tickets() -> dict:
    """Archive tickets done for longer than the setting (TICKET_ARCHIVE_AFTER_HOURS by default)."""
    from itsm.housekeeping import settings
    from itsm.housekeeping.archive import archive_done, settle

    hours = settings.archive_after_hours()
    outcome = archive_done(hours)
    settle(outcome)
    return {"archived": outcome.archived, "hours": hours}


@task(name="cleanup_stuck_runs", queue="high", max_retries=2, time_limit=300)
def cleanup_stuck_runs() -> dict:
    """Runs still "running" after twice their task's hard time limit lost their worker: mark them lost."""
    from itsm.housekeeping.maintenance import mark_stuck_runs_lost

    return {"lost": mark_stuck_runs_lost()}


@task(name="purge_job_runs", queue="low", autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3,
      time_limit=3600, soft_time_limit=3500)
def purge_job_runs() -> dict:
    """Remove audit rows older than JOB_RUN_RETENTION_DAYS, in batches."""
    from itsm.housekeeping.maintenance import purge_old_runs

    return {"deleted": purge_old_runs()}


@task(name="cleanup_failed_jobs", queue="low", max_retries=2, time_limit=1800, soft_time_limit=1700)
def cleanup_failed_jobs() -> dict:
    """Remove RQ failed-registry entries older than JOB_RUN_RETENTION_DAYS."""
    from itsm.housekeeping.maintenance import clean_failed_registries

    return {"removed": clean_failed_registries()}
