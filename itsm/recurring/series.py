"""A template's series of occurrence times, and what one processing pass owes it.

Pure functions over anything with the template's ``recurrence_*`` attributes (a Ticket
or a database row), so the processor can use rows straight from a bulk SELECT.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from itsm import recurrence, recurrence_rules
from itsm.recurrence_rules import Rule

CATCH_UP_CAP = 100  # "create every missed occurrence" creates at most this many per pass
_PLACEHOLDER = re.compile(r"\{(date|time|week|year|month|day|weekday)\}")
_FILL = {
    "date": lambda d: d.date().isoformat(),
    "time": lambda d: d.strftime("%H:%M"),
    "week": lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2]),
    "year": lambda d: str(d.year),
    "month": lambda d: d.strftime("%B"),
    "day": lambda d: str(d.day),
    "weekday": lambda d: d.strftime("%A"),
}


def parse_weekdays(raw: str) -> tuple[int, ...]:
    return tuple(sorted({int(d) for d in raw.split(",") if d.strip()})) if raw else ()


def rule_of(t, holidays: frozenset[date] = frozenset()) -> Rule:
    return Rule(
        interval=t.recurrence_interval, every=t.recurrence_every or 1,
        weekdays=parse_weekdays(t.recurrence_weekdays or ""), monthly_mode=t.recurrence_monthly_mode or "day",
        ordinal=t.recurrence_ordinal, ordinal_weekday=t.recurrence_ordinal_weekday,
        weekdays_only=bool(t.recurrence_weekdays_only), business_days=t.recurrence_business_days or "",
        end_date=t.recurrence_end_date, holidays=holidays if t.recurrence_business_days else frozenset(),
    )


@dataclass(frozen=True)
class Series:
    rule: Rule
    anchor: datetime
    tz: str
    count: int | None = None

    @classmethod
    def of(cls, t, holidays: frozenset[date] = frozenset()) -> Series:
        return cls(rule_of(t, holidays), t.recurrence_anchor, t.recurrence_time_zone, t.recurrence_count)

    @property
    def simple(self) -> bool:
        """Plain "every N units": the contract's engine answers it without building an rrule."""
        r = self.rule
        return not (r.weekdays or r.weekdays_only or r.business_days or r.monthly_mode != "day")

    def after(self, when: datetime) -> datetime | None:
        """The first occurrence strictly after ``when``, ignoring the count; None past the end date."""
        if not self.simple:
            return recurrence_rules.next_occurrence(self.rule, self.anchor, when, self.tz)
        found = recurrence.next_occurrence(self.anchor, self.rule.interval, self.rule.every, when, self.tz)
        if self.rule.end_date and found.astimezone(ZoneInfo(self.tz)).date() > self.rule.end_date:
            return None
        return found

    def first(self) -> datetime | None:
        """The series' first occurrence: the anchor when it fits the rule, else the next time that does."""
        return self.after(self.anchor - timedelta(microseconds=1))

    def upcoming(self, start: datetime | None, position: int = 0, n: int = 5) -> list[datetime]:
        """``start`` (an occurrence, the ``position``-th) and the ones after it, at most ``n``."""
        out: list[datetime] = []
        current = start
        while current is not None and len(out) < n and (self.count is None or position < self.count):
            out.append(current)
            position += 1
            current = self.after(current)
        return out


@dataclass(frozen=True)
class Plan:
    create: list[datetime]  # occurrence times to open tickets for, oldest first
    due: int  # series times that had come due (all but the latest were missed)
    next_occurrence: datetime | None  # None: the series has ended
    position: int

    @property
    def missed(self) -> int:
        return max(0, self.due - 1)


def plan(series: Series, next_occurrence: datetime, position: int, lead: timedelta, now: datetime,
         catch_up: str = "latest") -> Plan:
    """What a pass at ``now`` owes the template: every time whose creation moment (the time
    minus the lead) has come is due; by default only the latest of them opens a ticket."""
    horizon = now + lead
    keep: deque[datetime] = deque(maxlen=CATCH_UP_CAP if catch_up == "all" else 1)
    due = 0
    current: datetime | None = next_occurrence
    while current is not None and current <= horizon and (series.count is None or position < series.count):
        keep.append(current)
        due += 1
        position += 1
        current = series.after(current)
    if series.count is not None and position >= series.count:
        current = None
    return Plan(create=list(keep), due=due, next_occurrence=current, position=position)


def render_title(title: str, when: datetime, tz: str, limit: int = 200) -> str:
    """Fill {date}, {time}, {week}, ... with the occurrence's local values; other braces stay as typed."""
    if "{" not in title:
        return title
    local = when.astimezone(ZoneInfo(tz))
    rendered = _PLACEHOLDER.sub(lambda m: _FILL[m.group(1)](local), title)
    return rendered if len(rendered) <= limit else rendered[: limit - 1] + "\u2026"


DEFAULTS = {
    "recurrence_interval": "weekly", "recurrence_every": 1, "recurrence_time_zone": "UTC", "recurrence_weekdays": "",
    "recurrence_monthly_mode": "day", "recurrence_ordinal": None, "recurrence_ordinal_weekday": None,
    "recurrence_weekdays_only": False, "recurrence_business_days": "", "recurrence_end_date": None,
    "recurrence_count": None, "recurrence_lead_hours": 0, "recurrence_open_policy": "always",
    "recurrence_catch_up": "latest",
}


@dataclass(frozen=True)
class Recurrence:
    """A checked rule, ready for the model."""

    values: dict  # Ticket column -> value (rule and settings)
    start: datetime  # the entered next occurrence, aware UTC
    series: Series

    @classmethod
    def build(cls, start: datetime, **values) -> Recurrence:
        """From column values (the rest default), for code that schedules without the form."""
        full = {**DEFAULTS, **values}
        series = Series(rule_of(SimpleNamespace(**full)), start, full["recurrence_time_zone"],
                        full["recurrence_count"])
        return cls(values=full, start=start, series=series)
