"""Schedules in words, upcoming runs in the schedule's zone, and whether a task is late."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cron_descriptor import get_description
from flask import current_app

from itsm.schedules import service
from itsm.schedules.models import PeriodicTask
from jobs import ticks

LATE_GRACE = timedelta(minutes=2)


def describe(row: PeriodicTask) -> str:
    if row.interval:
        every, period = row.interval.every, row.interval.period
        unit = period[:-1] if every == 1 else period
        return f"every {every} {unit}" if every != 1 else f"every {unit}"
    if row.crontab:
        try:
            words = get_description(row.crontab.expression)
        except Exception:  # cron-descriptor refuses some valid croniter syntax; show the expression
            words = row.crontab.expression
        return f"{words} ({row.crontab.timezone})"
    if row.solar:
        return f"at {row.solar.event.replace('_', ' ')} at {row.solar.latitude}, {row.solar.longitude}"
    if row.clocked:
        return f"once at {row.clocked.clocked_time:%Y-%m-%d %H:%M:%S} UTC"
    return "no schedule"


def zone_of(row: PeriodicTask) -> ZoneInfo:
    return ZoneInfo(row.crontab.timezone if row.crontab else current_app.config["TIME_ZONE"])


def next_runs(row: PeriodicTask, now: datetime, count: int = 3) -> list[datetime]:
    if not row.enabled:
        return []
    after = max(now, row.start_time) if row.start_time else now
    runs = ticks.upcoming(service.spec_of(row), after, count)
    if row.expires:
        runs = [t for t in runs if t <= row.expires]
    zone = zone_of(row)
    return [t.astimezone(zone) for t in runs]


def period_of(row: PeriodicTask, now: datetime) -> timedelta | None:
    return ticks.typical_period(service.spec_of(row), now)


def late_since(row: PeriodicTask) -> datetime:
    """Where lateness is counted from: the last run, else the last change, else the creation."""
    return row.last_run_at or row.date_changed or row.created_at


def is_late(row: PeriodicTask, now: datetime) -> bool:
    """Not run within twice its period plus a grace (only once it has had the chance)."""
    if not row.enabled or row.one_off:
        return False
    period = period_of(row, now)
    if period is None:
        return False
    return now - late_since(row) > 2 * period + LATE_GRACE


def late_tasks(now: datetime) -> list[PeriodicTask]:
    """Enabled tasks that are late now, by name (for /readyz, alerts and the admin digest)."""
    from itsm.extensions import db

    rows = db.session.scalars(db.select(PeriodicTask).where(PeriodicTask.enabled.is_(True))
                              .order_by(PeriodicTask.name))
    return [row for row in rows if is_late(row, now)]


def late_status(row: PeriodicTask, now: datetime) -> str:
    if not row.enabled:
        return "disabled"
    return "LATE" if is_late(row, now) else "on time"
