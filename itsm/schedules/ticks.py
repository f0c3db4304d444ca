"""When periodic tasks are due: pure date math, no Flask, no database.

Crontab expressions are matched in the schedule's own wall-clock time (an IANA
zone), never the host's: each local time that matches fires once. A local time
that does not exist that day (spring forward) fires once, moved forward by the
gap; an ambiguous one (fall back) fires once, at its first instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from astral import Observer, sun
from croniter import croniter

from itsm.zones import to_utc

PERIODS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0, "microseconds": 1e-6}
SOLAR_EVENTS = ("dawn_astronomical", "dawn_nautical", "dawn_civil", "sunrise", "solar_noon", "sunset",
                "dusk_civil", "dusk_nautical", "dusk_astronomical")
_SOLAR_DEPRESSION = {"astronomical": 18, "nautical": 12, "civil": 6}


@dataclass(frozen=True)
class Interval:
    every: int
    period: str
    anchor: datetime  # ticks are anchor + k * step: no drift

    @property
    def step(self) -> float:
        return self.every * PERIODS[self.period]


@dataclass(frozen=True)
class Crontab:
    expression: str  # "minute hour day_of_month month_of_year day_of_week"
    timezone: str = "UTC"


@dataclass(frozen=True)
class Solar:
    event: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Clocked:
    at: datetime


Spec = Interval | Crontab | Solar | Clocked


def either_day(expression: str) -> bool:
    """Whether a crontab restricts both its day of the month and its day of the week, so that either one
    matches (cron's rule, which croniter applies): ``0 0 1 * 1`` runs on the 1st and on every Monday."""
    expanded = croniter(expression).expanded  # croniter's own test, on its own expansion
    return expanded[2][0] != "*" and expanded[4][0] != "*"


def _cron_next(spec: Crontab, after: datetime) -> datetime:
    zone = ZoneInfo(spec.timezone)
    # Start one day back in local time so a tick moved across a gap is not missed.
    local_start = after.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    it = croniter(spec.expression, local_start)
    for _ in range(100_000):
        candidate = to_utc(it.get_next(datetime), zone)
        if candidate > after:
            return candidate
    raise ValueError(f"no time matches {spec.expression!r}")


def _cron_prev(spec: Crontab, before: datetime) -> datetime | None:
    """The last tick at or before ``before``."""
    zone = ZoneInfo(spec.timezone)
    local_start = before.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    it = croniter(spec.expression, local_start)
    for _ in range(100_000):
        candidate = to_utc(it.get_prev(datetime), zone)
        if candidate <= before:
            return candidate
    return None


def _solar_time(spec: Solar, day: date) -> datetime | None:
    observer = Observer(latitude=spec.latitude, longitude=spec.longitude)
    try:
        if spec.event in ("sunrise", "sunset", "solar_noon"):
            fn = {"sunrise": sun.sunrise, "sunset": sun.sunset, "solar_noon": sun.noon}[spec.event]
            return fn(observer, date=day, tzinfo=UTC)
        kind, depression = spec.event.split("_")
        fn = sun.dawn if kind == "dawn" else sun.dusk
        return fn(observer, date=day, tzinfo=UTC, depression=_SOLAR_DEPRESSION[depression])
    except ValueError:  # the sun never reaches that elevation that day (polar day or night)
        return None


def next_tick(spec: Spec, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (aware), or None when there is none."""
    if isinstance(spec, Interval):
        k = math.floor((after - spec.anchor).total_seconds() / spec.step) + 1
        tick = spec.anchor + timedelta(seconds=max(k, 0) * spec.step)
        return tick if tick > after else tick + timedelta(seconds=spec.step)
    if isinstance(spec, Crontab):
        return _cron_next(spec, after)
    if isinstance(spec, Solar):
        day = after.astimezone(UTC).date() - timedelta(days=1)
        for offset in range(370):
            tick = _solar_time(spec, day + timedelta(days=offset))
            if tick is not None and tick > after:
                return tick
        return None
    return spec.at if spec.at > after else None


def prev_tick(spec: Spec, at_or_before: datetime) -> datetime | None:
    """The last tick at or before the given time, or None."""
    if isinstance(spec, Interval):
        k = math.floor((at_or_before - spec.anchor).total_seconds() / spec.step)
        return spec.anchor + timedelta(seconds=k * spec.step) if k >= 0 else None
    if isinstance(spec, Crontab):
        return _cron_prev(spec, at_or_before)
    if isinstance(spec, Solar):
        day = at_or_before.astimezone(UTC).date() + timedelta(days=1)
        for offset in range(370):
            tick = _solar_time(spec, day - timedelta(days=offset))
            if tick is not None and tick <= at_or_before:
                return tick
        return None
    return spec.at if spec.at <= at_or_before else None


def upcoming(spec: Spec, after: datetime, count: int = 3) -> list[datetime]:
    ticks: list[datetime] = []
    if isinstance(spec, Crontab):  # one iterator instead of a fresh search per tick
        zone = ZoneInfo(spec.timezone)
        it = croniter(spec.expression, after.astimezone(zone).replace(tzinfo=None) - timedelta(days=1))
        last = after
        while len(ticks) < count:
            candidate = to_utc(it.get_next(datetime), zone)
            if candidate > last:
                ticks.append(candidate)
                last = candidate
        return ticks
    while len(ticks) < count:
        tick = next_tick(spec, ticks[-1] if ticks else after)
        if tick is None:
            break
        ticks.append(tick)
    return ticks


def typical_period(spec: Spec, around: datetime) -> timedelta | None:
    """How far apart ticks usually are (for "late" checks); None for a one-off."""
    if isinstance(spec, Interval):
        return timedelta(seconds=spec.step)
    if isinstance(spec, Clocked):
        return None
    ticks = upcoming(spec, around, 3)
    if len(ticks) < 3:
        return None
    return max(ticks[1] - ticks[0], ticks[2] - ticks[1])


@dataclass(frozen=True)
class Plan:
    fire_now: tuple[datetime, ...]  # missed ticks to fire at once, by the misfire policy
    pending: datetime | None  # the next tick to wait for (may be a little in the past: fire it late)
    missed: int  # due ticks that were not fired as themselves: the misfire policy decided about them


def plan(spec: Spec, after: datetime, now: datetime, *, misfire: str = "once", grace: float = 60.0,
         catchup_window: float = 3600.0, catchup_cap: int = 100, start: datetime | None = None,
         expires: datetime | None = None, live_since: datetime | None = None) -> Plan:
    """What to fire for the ticks after ``after``, given it is ``now``.

    Ticks that came due after ``live_since`` (the previous pass of a running scheduler) came due while
    it was working, not down: each runs, a little late (the newest ``catchup_cap``). Of the others, only
    the latest due tick may run as itself, late, when it is at most ``grace`` seconds old; every other
    one is missed, however short the gap, and the misfire policy decides: ``skip`` drops them, ``once``
    fires the latest of them unless the latest due tick runs anyway (one run in all), ``all`` fires each
    one within ``catchup_window`` (the newest ``catchup_cap``).
    """
    if start is not None and after < start:
        after = start - timedelta(microseconds=1)
    fire: list[datetime] = []
    missed = 0
    first = next_tick(spec, after)
    if first is None or first > now:
        pending = first
    else:
        latest = prev_tick(spec, now)
        watched = now if live_since is None else min(max(after, live_since), now)
        live = _newest(spec, latest, watched, catchup_cap)
        if live:
            missed = _count_missed(spec, next_tick(spec, watched), latest) - len(live)  # beyond the cap
        runs_anyway = bool(live) or (now - latest).total_seconds() <= grace
        pending = latest if runs_anyway else next_tick(spec, now)
        last_missed = prev_tick(spec, watched) if live else latest
        if runs_anyway and not live:
            last_missed = prev_tick(spec, latest - timedelta(microseconds=1))
        if last_missed is not None and last_missed >= first:
            missed += _count_missed(spec, first, last_missed)
            if misfire == "once" and not runs_anyway:
                fire = [last_missed]
            elif misfire == "all":
                fire = _newest(spec, last_missed, max(after, now - timedelta(seconds=catchup_window)), catchup_cap)
        fire += live[:-1]
    if expires is not None:
        fire = [t for t in fire if t <= expires]
        if pending is not None and pending > expires:
            pending = None
    return Plan(tuple(fire), pending, missed)


def _newest(spec: Spec, last: datetime, after: datetime, cap: int) -> list[datetime]:
    """Up to ``cap`` ticks after ``after``, the newest ending at ``last``, oldest first (walked backwards)."""
    found: list[datetime] = []
    tick: datetime | None = last
    while tick is not None and tick > after and len(found) < cap:
        found.append(tick)
        tick = prev_tick(spec, tick - timedelta(microseconds=1))
    return found[::-1]


def _count_missed(spec: Spec, first: datetime, last: datetime, limit: int = 10_000) -> int:
    if isinstance(spec, Interval):
        return round((last - first).total_seconds() / spec.step) + 1
    count, tick = 0, first
    while tick is not None and tick <= last and count < limit:
        count += 1
        tick = next_tick(spec, tick)
    return count
