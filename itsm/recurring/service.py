"""Recurring templates: create, change the rule, pause and resume. Callers commit."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.recurring.models import Holiday, TicketRecurrence
from itsm.recurring.series import Recurrence, Series
from itsm.templating import show_time
from itsm.tickets.models import Ticket
from itsm.tickets.service import record
from itsm.users.models import User

RULE_COLUMNS = (
    "recurrence_interval", "recurrence_every", "recurrence_time_zone", "recurrence_weekdays",
    "recurrence_monthly_mode", "recurrence_ordinal", "recurrence_ordinal_weekday", "recurrence_weekdays_only",
    "recurrence_business_days", "recurrence_end_date", "recurrence_count",
)


def holidays() -> frozenset:
    return frozenset(db.session.scalars(db.select(Holiday.day)))


def series_of(rec: TicketRecurrence) -> Series:
    return Series.of(rec, holidays())


def summary(ticket: Ticket) -> str:
    """"Every month on the last Friday at 09:00 (Europe/Berlin), 12 times in all"."""
    rec = ticket.recurrence
    series = Series.of(rec)
    anchor = rec.recurrence_anchor.astimezone(ZoneInfo(rec.recurrence_time_zone))
    text = f"{series.rule.describe()} at {anchor:%H:%M} ({rec.recurrence_time_zone})"
    if rec.recurrence_count:
        text += f", {rec.recurrence_count} time{'s' if rec.recurrence_count != 1 else ''} in all"
    return text[0].upper() + text[1:]


def upcoming(ticket: Ticket, n: int = 5) -> list:
    rec = ticket.recurrence
    if rec.next_occurrence is None:
        return []
    return series_of(rec).upcoming(rec.next_occurrence, rec.recurrence_position, n)


def _reschedule(ticket: TicketRecurrence, recurrence: Recurrence) -> None:
    """Start the series at the entered time (or the first time after it that fits the rule)."""
    series = Series(rule=recurrence.series.rule, anchor=recurrence.start, tz=recurrence.series.tz,
                    count=recurrence.series.count)
    first = series.first()  # None: the rule ends before it starts (the form refuses that)
    ticket.recurrence_anchor = first or recurrence.start
    ticket.next_occurrence = first
    ticket.recurrence_position = 0
    _set_due(ticket)


def _set_due(ticket: TicketRecurrence) -> None:
    ticket.recurrence_due_at = (ticket.next_occurrence - timedelta(hours=ticket.recurrence_lead_hours)
                                if ticket.next_occurrence is not None else None)


def make_template(ticket: Ticket, actor: User | None, recurrence: Recurrence) -> None:
    """Make a new, column-less ticket a template and start its series."""
    ticket.is_recurring = True
    rec = ticket.recurrence = TicketRecurrence(recurrence_active=True, **recurrence.values)
    _reschedule(rec, recurrence)
    first = _iso(rec.next_occurrence, rec.recurrence_time_zone)
    record(ticket, "scheduled", actor, {"recurrence": [None, summary(ticket)], "next occurrence": [None, first]})


def change_rule(ticket: Ticket, actor: User | None, recurrence: Recurrence) -> dict:
    """Apply the form's rule; the series restarts only when the rule or its next time changed."""
    rec = ticket.recurrence
    before = (summary(ticket), rec.next_occurrence)
    rule_changed = any(getattr(rec, c) != recurrence.values[c] for c in RULE_COLUMNS)
    moved = rec.next_occurrence is None or recurrence.start != _shown_start(rec)
    for name, value in recurrence.values.items():
        setattr(rec, name, value)
    if rule_changed or moved:
        _reschedule(rec, recurrence)
    else:
        _set_due(rec)
    changes = {}
    after = (summary(ticket), rec.next_occurrence)
    if before[0] != after[0]:
        changes["recurrence"] = list((before[0], after[0]))
    if before[1] != after[1]:
        changes["next occurrence"] = [_iso(before[1], rec.recurrence_time_zone),
                                      _iso(after[1], rec.recurrence_time_zone)]
    if changes:
        ticket.updated_at = utcnow()
        record(ticket, "updated", actor, changes)
    return changes


def _shown_start(ticket: TicketRecurrence):
    """The next occurrence as the form showed it: to the minute."""
    return ticket.next_occurrence.replace(second=0, microsecond=0) if ticket.next_occurrence else None


def _iso(value, zone: str) -> str | None:
    """A next occurrence as the history keeps it: in the template's zone, named (the viewer's may differ)."""
    return show_time(value, zone, label=True, relative=False) if value else None


def set_active(ticket: Ticket, actor: User | None, active: bool) -> bool:
    """Pause or resume. Resuming never floods: a series that fell behind restarts at its next time
    after now (the missed times are counted as skipped, not created)."""
    rec = ticket.recurrence
    if rec.recurrence_active == active:
        return False
    rec.recurrence_active = active
    now = utcnow()
    if active and rec.next_occurrence is not None and rec.recurrence_due_at <= now:
        series = series_of(rec)
        current = rec.next_occurrence
        lead = timedelta(hours=rec.recurrence_lead_hours)
        position = rec.recurrence_position
        while current is not None and current - lead <= now and (series.count is None or position < series.count):
            position += 1
            current = series.after(current)
        if series.count is not None and position >= series.count:
            current = None
        rec.next_occurrence, rec.recurrence_position = current, position
        _set_due(rec)
    ticket.updated_at = now
    record(ticket, "resumed" if active else "paused", actor, {"active": [not active, active]})
    return True
