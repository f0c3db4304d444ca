"""Checks on a periodic task's definition, with a message per field (forms, CLI and sync share them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from croniter import croniter

from itsm.schedules import ticks
from itsm.schedules.cronfields import CRON_FIELDS, field_problem, uses_weekday_forms
from itsm.schedules.ticks import SOLAR_EVENTS
from itsm.zones import is_known_zone

PERIOD_CHOICES = ("days", "hours", "minutes", "seconds", "microseconds")
MISFIRE_POLICIES = ("skip", "once", "all")
OVERLAP_POLICIES = ("skip", "allow")
MAX_EVERY = 10**9  # the integer column's share: 10**9 microseconds is about 17 minutes
MAX_INTERVAL_DAYS = 3653  # ten years, leap days included
UNIT_MICROSECONDS = {"days": 86_400_000_000, "hours": 3_600_000_000, "minutes": 60_000_000, "seconds": 1_000_000,
                     "microseconds": 1}
FIRING_HORIZON = timedelta(days=1827)  # five years: a schedule must fire within them


@dataclass
class Definition:
    """Everything that defines a periodic task, as plain values."""

    name: str
    task: str
    kind: str  # interval, crontab, solar, clocked
    every: int | None = None
    period: str | None = None
    crontab: dict = field(default_factory=dict)  # minute, hour, day_of_month, month_of_year, day_of_week
    timezone: str | None = None
    event: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    clocked_time: datetime | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    queue: str | None = None
    start_time: datetime | None = None
    expires: datetime | None = None
    expire_seconds: int | None = None
    one_off: bool = False
    enabled: bool = True
    description: str = ""
    misfire_policy: str = "once"
    catchup_window_seconds: int = 86400
    overlap_policy: str = "skip"
    jitter_seconds: int = 0


class ValidationError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


MAX_JSON_DEPTH = 20  # task arguments are flat; "[[[[..." hundreds deep exhausts the stack somewhere later


def _depth(value) -> int:
    """How deeply lists and objects nest in a parsed JSON value (counted without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, level = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(raw: str, expected: type, label: str):
    """Parse a JSON text field; raises ValidationError with a field message."""
    too_deep = {label: f"Invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep."}
    try:
        value = json.loads(raw) if raw and raw.strip() else expected()
    except json.JSONDecodeError as err:
        raise ValidationError({label: f"Invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})."}) from None
    except RecursionError:  # json's own stack limit, before any syntax error
        raise ValidationError(too_deep) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValidationError(too_deep)
    if not isinstance(value, expected):
        wanted = "a JSON list, like [1, 2]" if expected is list else 'a JSON object, like {"key": 1}'
        raise ValidationError({label: f"Must be {wanted}."})
    return value


def validate(d: Definition, *, known_tasks: set[str], queues: tuple[str, ...], name_taken: bool,
             now: datetime | None = None) -> None:
    """Raise ValidationError listing every problem, field by field."""
    now = now or datetime.now(UTC)
    errors: dict[str, str] = {}
    if not d.name.strip():
        errors["name"] = "A name is required."
    elif len(d.name) > 200:
        errors["name"] = "At most 200 characters."
    elif name_taken:
        errors["name"] = f"A periodic task named {d.name!r} already exists."
    if d.task not in known_tasks:
        errors["task"] = f"Unknown task {d.task!r}; choose a registered task."
    if d.kind not in ("interval", "crontab", "solar", "clocked"):
        errors["kind"] = "Choose exactly one schedule: interval, crontab, solar or clocked."
    elif d.kind == "interval":
        errors.update(interval_problems(d.every, d.period))
    elif d.kind == "crontab":
        errors.update(crontab_problems(d.crontab, d.timezone, now))
    elif d.kind == "solar":
        errors.update(solar_problems(d.event, d.latitude, d.longitude, now))
    elif d.kind == "clocked":
        if d.clocked_time is None:
            errors["clocked_time"] = "A time is required."
        if not d.one_off:
            errors["one_off"] = "A clocked schedule runs once: tick one-off."
    if not isinstance(d.args, list):
        errors["args"] = "Must be a JSON list."
    if not isinstance(d.kwargs, dict):
        errors["kwargs"] = "Must be a JSON object."
    if d.queue and d.queue not in queues:
        errors["queue"] = f"Unknown queue {d.queue!r}; choose one of {', '.join(queues)}."
    if d.expires is not None and d.expire_seconds is not None:
        errors["expire_seconds"] = "Give an expiry time or expiry seconds, not both."
    if d.expire_seconds is not None and not 1 <= d.expire_seconds <= MAX_INTERVAL_DAYS * 86400:
        errors["expire_seconds"] = "Between 1 second and ten years."
    if d.start_time and d.expires and d.expires <= d.start_time:
        errors["expires"] = "Must be after the start time."
    if d.misfire_policy not in MISFIRE_POLICIES:
        errors["misfire_policy"] = f"Choose one of {', '.join(MISFIRE_POLICIES)}."
    if d.overlap_policy not in OVERLAP_POLICIES:
        errors["overlap_policy"] = f"Choose one of {', '.join(OVERLAP_POLICIES)}."
    if not 0 <= d.jitter_seconds <= 3600:
        errors["jitter_seconds"] = "Between 0 and 3600 seconds."
    if not 60 <= d.catchup_window_seconds <= 366 * 86400:
        errors["catchup_window_seconds"] = "Between 60 seconds and a year."
    if errors:
        raise ValidationError(errors)


# The schedule rules, one function per kind: the form, sync and the ORM's flush check (models.py) share
# them, and the database's CHECK on interval_schedules is built from max_every.

def max_every(period: str) -> int:
    """The largest ``every`` for a period: ten years, within the integer column."""
    return min(MAX_EVERY, MAX_INTERVAL_DAYS * UNIT_MICROSECONDS["days"] // UNIT_MICROSECONDS[period])


def interval_bound_sql() -> str:
    """``every``'s bound per period as SQL (a CHECK constraint on interval_schedules)."""
    cases = " ".join(f"WHEN '{p}' THEN {max_every(p)}" for p in PERIOD_CHOICES)
    return f"every <= CASE period {cases} END"


def interval_problems(every: int | None, period: str | None) -> dict[str, str]:
    errors = {}
    if period not in PERIOD_CHOICES:
        errors["period"] = f"Choose one of {', '.join(PERIOD_CHOICES)}."
    if every is None or every < 1:
        errors["every"] = "Must be 1 or more."
    elif period in PERIOD_CHOICES and every > max_every(period):
        errors["every"] = f"Must be at most {max_every(period):,} {period} (10 years)."
    return errors


def crontab_problems(fields: dict, zone: str | None, now: datetime) -> dict[str, str]:
    """Each field's syntax and numbers, the zone, then whether the whole ever fires."""
    values = {name: (fields.get(name) or "").strip() for name in CRON_FIELDS}
    errors = {}
    for name, value in values.items():
        problem = field_problem(name, value)
        alone = " ".join((value if n == name else "*") for n in CRON_FIELDS)
        if problem is None and not croniter.is_valid(alone):
            problem = f"Invalid cron field {value!r}."
        if problem:
            errors[name] = problem
    if not is_known_zone(zone):
        errors["timezone"] = f"Unknown time zone {zone!r}; use an IANA name like Europe/Berlin."
    if errors:
        return errors
    expression = " ".join(values.values())
    if not croniter.is_valid(expression):
        return {"day_of_month": f"Invalid crontab {expression!r}."}
    if ticks.either_day(expression) and uses_weekday_forms(values["day_of_month"], values["day_of_week"]):
        return {"day_of_week": "'W', '#' and 'L' weekdays cannot be combined with a day of the month: with both "
                               "day fields restricted a task runs on either one (cron's rule). Set one of them to *."}
    if not fires_within_horizon(ticks.Crontab(expression, zone), now):
        culprit = next((n for n in ("day_of_month", "day_of_week") if values[n] not in ("*", "?")), "month_of_year")
        return {culprit: "This crontab never fires in the next 5 years (like day 30 of February): "
                         "check the day and the month."}
    return {}


def solar_problems(event: str | None, latitude: float | None, longitude: float | None,
                   now: datetime) -> dict[str, str]:
    errors = {}
    if event not in SOLAR_EVENTS:
        errors["event"] = f"Choose one of {', '.join(SOLAR_EVENTS)}."
    if latitude is None or not -90 <= latitude <= 90:
        errors["latitude"] = "Latitude must be between -90 and 90."
    if longitude is None or not -180 <= longitude <= 180:
        errors["longitude"] = "Longitude must be between -180 and 180."
    if not errors and not fires_within_horizon(ticks.Solar(event, latitude, longitude), now):
        errors["event"] = "The sun never reaches this event there: choose another event or place."
    return errors


def fires_within_horizon(spec: ticks.Spec, now: datetime) -> bool:
    """Whether the schedule has a tick within the next five years (and can be computed at all)."""
    try:
        first = ticks.next_tick(spec, now)
    except (ValueError, ArithmeticError, LookupError):  # croniter's errors are ValueErrors; overflow; a zone
        return False
    return first is not None and first <= now + FIRING_HORIZON
