"""Schedules in words, upcoming runs in the schedule's zone, and whether a task is late or invalid.

Every evaluation of a row's ticks goes through ``evaluation``: a row that cannot be evaluated has no
next runs and no period, and is reported as invalid, never as an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options
from flask import current_app

from itsm.extensions import db
from itsm.schedules import evaluation, lastrun, service, ticks
from itsm.schedules.lastrun import LastRun
from itsm.schedules.models import PeriodicTask
from itsm.templating import show_time
from itsm.zones import is_known_zone

LATE_GRACE = timedelta(minutes=2)


class _CronWords(ExpressionDescriptor):
    """cron-descriptor's words, saying cron's either-day rule plainly: with both day fields restricted
    a task runs on either ("on day 1 of the month or on Monday"); cron-descriptor's own wording varies."""

    def __init__(self, expression: str) -> None:
        super().__init__(expression, Options())
        self.either = ticks.either_day(expression)

    def get_day_of_month_description(self) -> str:
        words = super().get_day_of_month_description()
        return (words or ", on every day of the month") if self.either else words

    def get_day_of_week_description(self) -> str:
        words = super().get_day_of_week_description()
        if not self.either:
            return words
        words = words.removeprefix(", ").removeprefix("or ").removeprefix("only ")
        return f" or {words if words.startswith(('on ', 'every ')) else 'on ' + words}"


def crontab_in_words(expression: str) -> str:
    try:
        return _CronWords(expression).get_full_description()
    except Exception:  # cron-descriptor refuses some valid croniter syntax; show the expression
        return expression


def describe(row: PeriodicTask) -> str:
    if row.interval:
        every, period = row.interval.every, row.interval.period
        unit = period[:-1] if every == 1 else period
        return f"every {every} {unit}" if every != 1 else f"every {unit}"
    if row.crontab:
        return f"{crontab_in_words(row.crontab.expression)} ({row.crontab.timezone})"
    if row.solar:
        return f"at {row.solar.event.replace('_', ' ')} at {row.solar.latitude}, {row.solar.longitude}"
    if row.clocked:
        return f"once at {show_time(row.clocked.clocked_time, label=True, relative=False)}"
    return "no schedule"


def zone_of(row: PeriodicTask) -> ZoneInfo:
    name = row.crontab.timezone if row.crontab else current_app.config["TIME_ZONE"]
    return ZoneInfo(name if is_known_zone(name) else "UTC")


def invalid_reason(row: PeriodicTask, now: datetime) -> str | None:
    """Why the task cannot be scheduled, or None: the scheduler's mark while the definition it judged
    is unchanged (it also knows of tasks missing from the code), else an evaluation here and now."""
    if row.invalid_reason and row.scheduled_hash == service.definition_hash(row):
        return row.invalid_reason
    return evaluation.attempt(row, lambda spec: ticks.upcoming(spec, now, 1), [])[1]


def next_runs(row: PeriodicTask, now: datetime, count: int = 3) -> list[datetime]:
    if not row.enabled:
        return []
    # The start time itself is a tick (the scheduler plans from just before it).
    after = max(now, row.start_time - timedelta(microseconds=1)) if row.start_time else now
    runs, _ = evaluation.attempt(row, lambda spec: ticks.upcoming(spec, after, count), [])
    if row.expires:
        runs = [t for t in runs if t <= row.expires]
    zone = zone_of(row)
    return [t.astimezone(zone) for t in runs]


@dataclass
class Preview:
    words: str
    runs: list[datetime]  # in ``zone``
    zone: str
    enabled: bool


def preview(d, now: datetime, count: int = 5) -> Preview:
    """The next runs of a definition that is not saved (the edit form's *Preview*), in the schedule's
    zone. Worked out on a row outside the session: nothing is written."""
    row = PeriodicTask()
    service.apply(row, replace(d, enabled=True))
    return Preview(describe(row), next_runs(row, now, count), zone_of(row).key, d.enabled)


def period_of(row: PeriodicTask, now: datetime) -> timedelta | None:
    return evaluation.attempt(row, lambda spec: ticks.typical_period(spec, now), None)[0]


_UNREAD = object()  # the last run was not given: read it (one row's pages; lists pass theirs)


def _last(row: PeriodicTask, last) -> LastRun | None:
    return lastrun.last_run(row) if last is _UNREAD else last


def late_since(row: PeriodicTask, last=_UNREAD) -> datetime:
    """Where lateness is counted from: the last run (``lastrun``), else the last change, else the creation."""
    last = _last(row, last)
    return last.at if last is not None else row.date_changed or row.created_at


def is_late(row: PeriodicTask, now: datetime, last=_UNREAD) -> bool:
    """Not run within twice its period plus a grace (only once it has had the chance). An invalid task
    is not late: it is invalid."""
    if not row.enabled or row.one_off:
        return False
    period = period_of(row, now)
    if period is None:
        return False
    return now - late_since(row, last) > 2 * period + LATE_GRACE


@dataclass
class Troubles:
    """Enabled tasks that are late, and those that cannot be scheduled at all (with the reason)."""

    late: list[PeriodicTask] = field(default_factory=list)
    invalid: list[tuple[PeriodicTask, str]] = field(default_factory=list)
    last: dict[int, LastRun | None] = field(default_factory=dict)  # every enabled task's last run, by id


def troubles(now: datetime) -> Troubles:
    """For /readyz, the alerts and the admin digest; by name."""
    rows = db.session.scalars(db.select(PeriodicTask).where(PeriodicTask.enabled.is_(True))
                              .order_by(PeriodicTask.name)).unique().all()
    found = Troubles(last=lastrun.last_runs(rows))
    for row in rows:
        reason = invalid_reason(row, now)
        if reason:
            found.invalid.append((row, reason))
        elif is_late(row, now, found.last[row.id]):
            found.late.append(row)
    return found


def late_tasks(now: datetime) -> list[PeriodicTask]:
    return troubles(now).late


def state_of(row: PeriodicTask, now: datetime, last=_UNREAD) -> tuple[str, str | None]:
    """("invalid", reason), ("disabled", None), ("late", None) or ("on time", None)."""
    reason = invalid_reason(row, now)
    if reason:
        return "invalid", reason
    if not row.enabled:
        return "disabled", None
    return ("late" if is_late(row, now, last) else "on time"), None


def late_status(row: PeriodicTask, now: datetime, last=_UNREAD) -> str:
    state, reason = state_of(row, now, last)
    return f"INVALID: {reason}" if state == "invalid" else state.upper() if state == "late" else state
