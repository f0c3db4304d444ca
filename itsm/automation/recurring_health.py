"""The recurring-tickets health section of /admin/automation: is it running, and is it keeping up?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlalchemy.orm import contains_eager

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.recurring.models import RecurringTicketRun, TicketRecurrence
from itsm.schedules.describe import period_of
from itsm.schedules.models import PeriodicTask
from itsm.templating import chart_macro, show_time, viewer_zone
from itsm.tickets.models import Ticket

TASK = "process_recurring_tickets"
DEFAULT_PERIOD = timedelta(minutes=5)


@dataclass
class Health:
    last: RecurringTicketRun | None
    last_success: RecurringTicketRun | None
    schedule: PeriodicTask | None
    period: timedelta
    warning: str | None
    week: dict  # runs, errors, created, skipped, missed over the last 7 days
    failures: list[RecurringTicketRun]
    upcoming: list[TicketRecurrence]
    chart: Markup


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _warning(schedule: PeriodicTask | None, last_success: RecurringTicketRun | None, period: timedelta,
             now: datetime) -> str | None:
    if schedule is None:
        return "No periodic job runs process_recurring_tickets: run `flask schedules sync`."
    if not schedule.enabled:
        return f"The periodic job {schedule.name} is disabled: no recurring tickets are being opened."
    if last_success is None:
        since = now - (schedule.date_changed or schedule.created_at)
        if since > 2 * period:
            return (f"No successful run yet, {_age(since)} after the schedule was set up: "
                    "check the worker and scheduler.")
        return None
    age = now - (last_success.finished_at or last_success.started_at)
    if age > 2 * period:
        return (f"The last successful run was {_age(age)} ago, more than twice the schedule's period "
                f"({_age(period)}): recurring tickets are not being opened. Check the worker and scheduler.")
    return None


def collect(now: datetime | None = None) -> Health:
    now = now or utcnow()
    schedule = db.session.scalars(db.select(PeriodicTask).where(PeriodicTask.task == TASK)
                                  .order_by(PeriodicTask.enabled.desc(), PeriodicTask.id)).first()
    period = (period_of(schedule, now) if schedule else None) or DEFAULT_PERIOD
    newest = db.select(RecurringTicketRun).order_by(RecurringTicketRun.started_at.desc(), RecurringTicketRun.id.desc())
    last = db.session.scalars(newest.limit(1)).first()
    last_success = db.session.scalars(newest.where(RecurringTicketRun.status == "success").limit(1)).first()
    since = now - timedelta(days=7)
    week_rows = db.session.execute(
        db.select(RecurringTicketRun.started_at, RecurringTicketRun.duration_seconds, RecurringTicketRun.status,
                  RecurringTicketRun.total_created, RecurringTicketRun.total_skipped, RecurringTicketRun.missed)
        .where(RecurringTicketRun.started_at >= since).order_by(RecurringTicketRun.started_at)).all()
    failures = db.session.scalars(newest.where(RecurringTicketRun.status == "error",
                                               RecurringTicketRun.started_at >= since).limit(5)).all()
    upcoming = db.session.scalars(
        db.select(TicketRecurrence).join(TicketRecurrence.ticket)
        .where(TicketRecurrence.recurrence_active.is_(True), TicketRecurrence.recurrence_due_at.is_not(None),
               Ticket.is_archived.is_(False))
        .order_by(TicketRecurrence.recurrence_due_at, TicketRecurrence.ticket_id).limit(10)
        .options(contains_eager(TicketRecurrence.ticket))).all()
    return Health(
        last=last, last_success=last_success, schedule=schedule, period=period,
        warning=_warning(schedule, last_success, period, now),
        week={"runs": len(week_rows), "created": sum(r.total_created for r in week_rows),
              "skipped": sum(r.total_skipped for r in week_rows), "missed": sum(r.missed for r in week_rows),
              "errors": sum(1 for r in week_rows if r.status == "error")},
        failures=failures, upcoming=upcoming, chart=chart(week_rows, now),
    )


def chart(rows, now: datetime, hours: int = 168) -> Markup:
    """Runs per hour (light bars) and the longest run of each hour (dark bars, red when one failed),
    over the last ``hours``; an empty stretch means nothing ran. Days and times in the viewer's zone."""
    width, lane, gap, left = 840, 60, 14, 44
    step = (width - left) / hours
    zone = viewer_zone()
    bar = step * 0.8
    start = now - timedelta(hours=hours)
    buckets = [{"runs": 0, "max": 0.0, "errors": 0, "created": 0} for _ in range(hours)]
    for row in rows:
        index = int((row.started_at - start).total_seconds() // 3600)
        if 0 <= index < hours:
            bucket = buckets[index]
            bucket["runs"] += 1
            bucket["max"] = max(bucket["max"], row.duration_seconds or 0.0)
            bucket["errors"] += row.status == "error"
            bucket["created"] += row.total_created or 0
    most_runs = max([b["runs"] for b in buckets] + [1])
    longest = max([b["max"] for b in buckets] + [0.001])
    base = 2 * lane + gap
    legend = [{"y": 10, "text": "runs/h"}, {"y": 22, "text": f"max {most_runs}"},
              {"y": lane + gap + 10, "text": "duration"}, {"y": lane + gap + 22, "text": f"max {longest:.2f} s"}]
    groups = []
    for i, b in enumerate(buckets):
        if not b["runs"]:
            continue
        x = left + i * step
        hour = start + timedelta(hours=i)
        tip = (f"{show_time(hour, zone, label=True)}, the hour from then: {b['runs']} run(s), {b['errors']} failed, "
               f"longest {b['max']:.3f} s, {b['created']} ticket(s) created")
        h_runs = max(1.0, lane * b["runs"] / most_runs)
        h_dur = max(1.0, lane * b["max"] / longest)
        groups.append({"tip": tip, "bars": [
            {"css": "runs", "x": x, "y": lane - h_runs, "width": bar, "height": h_runs},
            {"css": "bar error" if b["errors"] else "bar", "x": x, "y": base - h_dur, "width": bar, "height": h_dur}]})
    # A tick at each midnight of the viewer's zone within the window, labelled with that day.
    tz = ZoneInfo(zone)
    ticks = []
    day = start.astimezone(tz).date() + timedelta(days=1)
    while (midnight := datetime.combine(day, time(), tz)) <= now:
        x = left + (midnight - start).total_seconds() / 3600 * step
        ticks.append({"x": x, "label": midnight.strftime("%a %d")})
        day += timedelta(days=1)
    return chart_macro("lanes")({
        "width": width, "height": 2 * lane + gap + 28, "left": left, "base": base, "axes": [lane, base],
        "label": "Recurring-ticket runs per hour and their longest duration, last 7 days",
        "legend": legend, "groups": groups, "ticks": ticks})
