"""Richer recurrence rules (RFC 5545 through python-dateutil's rrule), in local wall-clock time.

A rule adds to the simple "every N days/weeks/months/years" series: several weekdays
for weekly rules; for monthly rules a day of the month, an ordinal weekday ("first
Monday", "last Friday") or the month's last day; "every weekday"; business days only
(weekends and admin-kept holidays skipped, or moved to the next business day); an end
date. Counting occurrences and lead time belong to the caller (they need the database).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil import rrule
from dateutil.relativedelta import relativedelta

from itsm.recurrence import INTERVALS
from itsm.zones import to_utc

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
MONTHLY_MODES = ("day", "ordinal", "last_day")
_RR_WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)
_FREQ = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY, "monthly": rrule.MONTHLY, "yearly": rrule.YEARLY}


@dataclass(frozen=True)
class Rule:
    interval: str
    every: int = 1
    weekdays: tuple[int, ...] = ()  # weekly: 0 = Monday ... 6 = Sunday; empty means the anchor's weekday
    monthly_mode: str = "day"  # day (the anchor's, clamped to short months), ordinal, last_day
    ordinal: int | None = None  # 1..4, or -1 for "last"
    ordinal_weekday: int | None = None
    weekdays_only: bool = False  # daily: Monday to Friday
    business_days: str = ""  # "", "skip" or "next": what happens on weekends and holidays
    end_date: date | None = None
    holidays: frozenset[date] = field(default_factory=frozenset)

    def problems(self) -> dict[str, str]:
        """Field-level messages for a rule that cannot work; empty when it is fine."""
        errors = {}
        if self.interval not in INTERVALS:
            errors["recurrence_interval"] = f"Choose one of {', '.join(INTERVALS)}."
        if not 1 <= self.every <= 1000:
            errors["recurrence_every"] = "Must be between 1 and 1000."
        if self.weekdays and self.interval != "weekly":
            errors["recurrence_weekdays"] = "Weekdays apply to weekly rules only."
        if any(not 0 <= d <= 6 for d in self.weekdays):
            errors["recurrence_weekdays"] = "Unknown weekday."
        if self.weekdays_only and self.interval != "daily":
            errors["recurrence_weekdays_only"] = "\u201cEvery weekday\u201d applies to daily rules only."
        if self.monthly_mode not in MONTHLY_MODES:
            errors["recurrence_monthly_mode"] = "Unknown monthly option."
        elif self.monthly_mode != "day" and self.interval != "monthly":
            errors["recurrence_monthly_mode"] = "This option applies to monthly rules only."
        elif self.monthly_mode == "ordinal" and (self.ordinal not in ORDINALS or self.ordinal_weekday is None
                                                  or not 0 <= self.ordinal_weekday <= 6):
            errors["recurrence_ordinal"] = "Choose which weekday of the month (first to fourth, or last)."
        if self.business_days not in ("", "skip", "next"):
            errors["recurrence_business_days"] = "Unknown business-day option."
        return errors

    def describe(self) -> str:
        unit = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}.get(self.interval, "?")
        text = f"every {unit}" if self.every == 1 else f"every {self.every} {unit}s"
        if self.weekdays_only:
            text = "every weekday" if self.every == 1 else text + ", weekdays only"
        if self.weekdays:
            text += " on " + ", ".join(WEEKDAY_NAMES[d] for d in sorted(self.weekdays))
        if self.monthly_mode == "ordinal" and self.ordinal_weekday is not None:
            text += f" on the {ORDINALS.get(self.ordinal, '?')} {WEEKDAY_NAMES[self.ordinal_weekday]}"
        elif self.monthly_mode == "last_day":
            text += " on the last day"
        if self.business_days:
            text += ", business days only" if self.business_days == "skip" else ", moved to the next business day"
        if self.end_date:
            text += f", until {self.end_date.isoformat()}"
        return text


def _by_day_of_month(day: int) -> dict:
    # RFC 5545 skips months without the day; "the day, or the month's last day" is the
    # last of the days 28..day that the month has.
    if day <= 28:
        return {"bymonthday": day}
    return {"bymonthday": tuple(range(28, day + 1)), "bysetpos": -1}


def _rrule(rule: Rule, anchor_local: datetime, start: datetime) -> rrule.rrule:
    options: dict = {"freq": _FREQ[rule.interval], "interval": rule.every, "dtstart": start, "cache": False}
    if rule.interval == "daily" and rule.weekdays_only:
        options["byweekday"] = _RR_WEEKDAYS[:5]
    elif rule.interval == "weekly":
        options["byweekday"] = tuple(_RR_WEEKDAYS[d] for d in (rule.weekdays or (anchor_local.weekday(),)))
    elif rule.interval == "monthly":
        if rule.monthly_mode == "ordinal":
            options["byweekday"] = _RR_WEEKDAYS[rule.ordinal_weekday](rule.ordinal)
        elif rule.monthly_mode == "last_day":
            options["bymonthday"] = -1
        else:
            options.update(_by_day_of_month(anchor_local.day))
    elif rule.interval == "yearly":
        options["bymonth"] = anchor_local.month
        options.update(_by_day_of_month(anchor_local.day))
    if rule.end_date is not None:
        options["until"] = datetime.combine(rule.end_date, time.max)
    return rrule.rrule(**options)


def _aligned_start(rule: Rule, anchor_local: datetime, after_local: datetime) -> datetime:
    """A period start at or before ``after`` that keeps the series' phase, so each call is not a
    walk from the anchor over every past occurrence."""
    if after_local <= anchor_local:
        return anchor_local
    if rule.interval in ("daily", "weekly"):
        period = timedelta(days=rule.every * (7 if rule.interval == "weekly" else 1))
        if rule.interval == "weekly":  # weeks start on the anchor's Monday
            anchor_local = anchor_local - timedelta(days=anchor_local.weekday())
        k = max(0, int((after_local - anchor_local) / period) - 1)
        return anchor_local + k * period
    months = (after_local.year - anchor_local.year) * 12 + after_local.month - anchor_local.month
    step = rule.every * (12 if rule.interval == "yearly" else 1)
    k = max(0, months // step - 1)
    start = anchor_local.replace(day=1) + relativedelta(months=k * step)
    return start.replace(hour=anchor_local.hour, minute=anchor_local.minute, second=anchor_local.second)


def _business(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def next_occurrence(rule: Rule, anchor: datetime, after: datetime, tz: str) -> datetime | None:
    """The first occurrence strictly after ``after`` (aware UTC), or None when the rule has ended."""
    zone = ZoneInfo(tz)
    anchor_local = anchor.astimezone(zone).replace(tzinfo=None)
    after_local = after.astimezone(zone).replace(tzinfo=None)
    start = _aligned_start(rule, anchor_local, after_local - timedelta(days=2))
    if start != anchor_local:
        start = start.replace(hour=anchor_local.hour, minute=anchor_local.minute, second=anchor_local.second,
                              microsecond=anchor_local.microsecond)
    series = _rrule(rule, anchor_local, start)
    # One pass over the rule from ``start`` (asking ``series.after()`` each time restarts from dtstart:
    # quadratic, half a minute when no candidate is a business day, as for a weekly rule on Sundays).
    for local in itertools.islice(series, 5000):
        if local < anchor_local:
            continue
        if rule.business_days and not _business(local.date(), rule.holidays):
            if rule.business_days == "skip":
                continue
            while not _business(local.date(), rule.holidays):  # "next": the next business day, same time
                local += timedelta(days=1)
        when = to_utc(local, zone)
        if when > after:
            return when
    return None


def upcoming(rule: Rule, anchor: datetime, after: datetime, tz: str, count: int = 5) -> list[datetime]:
    out: list[datetime] = []
    current = after
    while len(out) < count:
        nxt = next_occurrence(rule, anchor, current, tz)
        if nxt is None:
            break
        out.append(nxt)
        current = nxt
    return out
