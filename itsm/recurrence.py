"""Recurrence date math: pure functions, no Flask, no database.

Occurrences are computed in the wall-clock time of an IANA zone, so "every Monday at
09:00" stays at 09:00 local across DST changes. Each occurrence is computed from the
series' anchor (never from the previous occurrence), so a monthly series on the 31st
falls on the last day of shorter months and returns to the 31st after.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from itsm.zones import to_utc

INTERVALS = ("daily", "weekly", "monthly", "yearly")


def _step(interval: str, every: int, k: int):
    if interval == "daily":
        return timedelta(days=every * k)
    if interval == "weekly":
        return timedelta(weeks=every * k)
    if interval == "monthly":
        return relativedelta(months=every * k)  # clamps to the month's last day
    if interval == "yearly":
        return relativedelta(years=every * k)  # Feb 29 falls on Feb 28 in other years
    raise ValueError(f"unknown interval {interval!r}; use one of {', '.join(INTERVALS)}")


def occurrence(anchor_local: datetime, interval: str, every: int, k: int, zone: ZoneInfo) -> datetime:
    """The k-th occurrence (k >= 0) of the series, as aware UTC."""
    return to_utc(anchor_local + _step(interval, every, k), zone)


def _estimate(anchor_local: datetime, after_local: datetime, interval: str, every: int) -> int:
    """A step count close to (and not above) the one we look for."""
    if interval in ("daily", "weekly"):
        days = (after_local - anchor_local).total_seconds() / 86400
        return int(days // (every * (7 if interval == "weekly" else 1)))
    months = (after_local.year - anchor_local.year) * 12 + after_local.month - anchor_local.month
    if interval == "yearly":
        return months // (12 * every)
    return months // every


def next_occurrence(anchor: datetime, interval: str, every: int, after: datetime, tz: str) -> datetime:
    """The first occurrence strictly after ``after`` of the series that starts at ``anchor`` and
    steps ``every`` (>= 1) ``interval``s in the wall-clock time of ``tz``. Aware in, aware UTC out."""
    if anchor.tzinfo is None or after.tzinfo is None:
        raise ValueError("anchor and after must be aware datetimes")
    if every < 1:
        raise ValueError("every must be 1 or more")
    zone = ZoneInfo(tz)
    anchor_local = anchor.astimezone(zone).replace(tzinfo=None)
    after_local = after.astimezone(zone).replace(tzinfo=None)
    # The estimate's occurrence is never more than a step before the answer, and the one before it
    # is always at or before ``after``: a step (a day at least) outweighs any UTC offset change.
    k = max(0, _estimate(anchor_local, after_local, interval, every))
    for _ in range(16):
        candidate = occurrence(anchor_local, interval, every, k, zone)
        if candidate > after:
            return candidate
        k += 1
    raise AssertionError("no occurrence found near the estimate")  # pragma: no cover


def occurrences_between(anchor: datetime, interval: str, every: int, after: datetime, until: datetime, tz: str,
                        limit: int = 1000) -> list[datetime]:
    """Occurrences in (after, until], at most ``limit`` (the latest ones are kept)."""
    found: list[datetime] = []
    current = after
    while len(found) < limit + 1:
        current = next_occurrence(anchor, interval, every, current, tz)
        if current > until:
            break
        found.append(current)
    return found[-limit:]
