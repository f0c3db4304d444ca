"""Checks on a periodic task's definition, with a message per field (forms, CLI and sync share them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from itsm.schedules.models import MISFIRE_POLICIES, OVERLAP_POLICIES, PERIOD_CHOICES
from jobs.ticks import SOLAR_EVENTS

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
MAX_EVERY = 10**9


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


def validate(d: Definition, *, known_tasks: set[str], queues: tuple[str, ...], name_taken: bool) -> None:
    """Raise ValidationError listing every problem, field by field."""
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
        if d.every is None or d.every < 1:
            errors["every"] = "Must be 1 or more."
        elif d.every > MAX_EVERY:
            errors["every"] = f"Must be at most {MAX_EVERY}."
        if d.period not in PERIOD_CHOICES:
            errors["period"] = f"Choose one of {', '.join(PERIOD_CHOICES)}."
    elif d.kind == "crontab":
        for name in CRON_FIELDS:
            value = (d.crontab.get(name) or "").strip()
            expression = " ".join((value if n == name else "*") for n in CRON_FIELDS)
            if not value or not croniter.is_valid(expression):
                errors[name] = f"Invalid cron field {value!r}."
        _check_zone(d.timezone, errors)
    elif d.kind == "solar":
        if d.event not in SOLAR_EVENTS:
            errors["event"] = f"Choose one of {', '.join(SOLAR_EVENTS)}."
        if d.latitude is None or not -90 <= d.latitude <= 90:
            errors["latitude"] = "Latitude must be between -90 and 90."
        if d.longitude is None or not -180 <= d.longitude <= 180:
            errors["longitude"] = "Longitude must be between -180 and 180."
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
    if d.expire_seconds is not None and d.expire_seconds < 1:
        errors["expire_seconds"] = "Must be 1 or more."
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


def _check_zone(zone: str | None, errors: dict) -> None:
    try:
        ZoneInfo(zone or "")
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = f"Unknown time zone {zone!r}; use an IANA name like Europe/Berlin."
