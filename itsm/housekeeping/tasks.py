"""Housekeeping jobs: archive tickets that sat in Done long enough."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from itsm.housekeeping import settings
from itsm.housekeeping.archive import archive_done, settle
from jobs.task import task


@task(name="archive_done_tickets", queue="low", autoretry_for=(OperationalError,), retry_backoff=10,
      max_retries=3, time_limit=1800, soft_time_limit=1700)
def archive_done_tickets() -> dict:
    """Archive tickets done for longer than the setting (TICKET_ARCHIVE_AFTER_HOURS by default)."""
    hours = settings.archive_after_hours()
    outcome = archive_done(hours)
    settle(outcome)
    return {"archived": outcome.archived, "hours": hours}
