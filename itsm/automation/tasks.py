"""Admin notices: the daily digests (automation summary, things that need an admin) and late-schedule alerts."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from itsm.automation.admin_mail import alert_late_schedules, send_daily_digests
from itsm.dbtypes import utcnow
from jobs.task import task


@task(name="send_admin_digests", queue="low", autoretry_for=(OperationalError,), retry_backoff=30, max_retries=3,
      time_limit=600)
def send_admin_digests() -> dict:
    """Email the daily digests to the admins who asked for them (once per day, however often it runs)."""
    return send_daily_digests(utcnow())


@task(name="watch_schedules", queue="high", autoretry_for=(OperationalError,), retry_backoff=10, max_retries=2,
      time_limit=120)
def watch_schedules() -> dict:
    """Alert admins to schedules that have not run when they should have (once per late episode)."""
    return alert_late_schedules(utcnow())
