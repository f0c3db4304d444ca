"""Reading and writing periodic tasks; every write goes through ``save`` and is validated."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from datetime import UTC, datetime

from flask import current_app

from itsm.dbtypes import same_name, utcnow
from itsm.extensions import db
from itsm.schedules import ticks
from itsm.schedules.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from itsm.schedules.validation import CRON_FIELDS, Definition, validate
from jobs import registry
from jobs.exceptions import JobsError

# What an admin may change on a registry row without it being an override: nothing.
NOT_DEFINITION = ("name", "description")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def known_tasks() -> set[str]:
    return set(registry.all_tasks())


def _copy(value, kind: type):
    """A copy of a JSON column's value; one of the wrong kind (written by SQL) as it is, for validation
    and the edit form to refuse and show, not to fail on."""
    if value is None:
        return kind()
    return kind(value) if isinstance(value, kind) else value


def arguments_usable(row: PeriodicTask) -> bool:
    """Whether the row's JSON columns hold what a job is called with (they accept any JSON)."""
    return isinstance(row.args, list) and isinstance(row.kwargs, dict)


def definition_of(row: PeriodicTask) -> Definition:
    d = Definition(
        name=row.name, task=row.task, kind=row.kind, args=_copy(row.args, list), kwargs=_copy(row.kwargs, dict),
        queue=row.queue, start_time=row.start_time, expires=row.expires, expire_seconds=row.expire_seconds,
        one_off=row.one_off, enabled=row.enabled, description=row.description or "",
        misfire_policy=row.misfire_policy, catchup_window_seconds=row.catchup_window_seconds,
        overlap_policy=row.overlap_policy, jitter_seconds=row.jitter_seconds,
    )
    if row.interval:
        d.every, d.period = row.interval.every, row.interval.period
    elif row.crontab:
        d.crontab = {f: getattr(row.crontab, f) for f in CRON_FIELDS}
        d.timezone = row.crontab.timezone
    elif row.solar:
        d.event, d.latitude, d.longitude = row.solar.event, float(row.solar.latitude), float(row.solar.longitude)
    elif row.clocked:
        d.clocked_time = row.clocked.clocked_time
    return d


def _jsonable(d: Definition) -> dict:
    data = asdict(d)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return data


def definition_json(d: Definition) -> dict:
    return _jsonable(d)


def definition_hash(row: PeriodicTask) -> str:
    """What the scheduler's plan depends on; enabling or renaming does not change it."""
    data = _jsonable(definition_of(row))
    for key in ("enabled", "name", "description"):
        data.pop(key)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def spec_of(row: PeriodicTask) -> ticks.Spec:
    if row.interval:
        # Anchored on the start time, or on the Unix epoch: "every 10 minutes" fires at :00, :10, ...
        return ticks.Interval(row.interval.every, row.interval.period, row.start_time or EPOCH)
    if row.crontab:
        return ticks.Crontab(row.crontab.expression, row.crontab.timezone)
    if row.solar:
        return ticks.Solar(row.solar.event, float(row.solar.latitude), float(row.solar.longitude))
    return ticks.Clocked(row.clocked.clocked_time)


def name_taken(name: str, exclude_id: int | None) -> bool:
    stmt = db.select(PeriodicTask.id).where(same_name(PeriodicTask.name, name.strip()))
    if exclude_id is not None:
        stmt = stmt.where(PeriodicTask.id != exclude_id)
    return db.session.scalar(stmt) is not None


def check(d: Definition, row: PeriodicTask | None = None) -> None:
    validate(d, known_tasks=known_tasks(), queues=tuple(current_app.config["JOBS_QUEUES"]),
             name_taken=name_taken(d.name, row.id if row else None))


def _schedule_objects(row: PeriodicTask, d: Definition) -> None:
    """Give the row the schedule object its kind needs, reusing its own when the kind is unchanged."""
    for kind in ("interval", "crontab", "solar", "clocked"):
        if kind != d.kind and getattr(row, kind) is not None:
            old = getattr(row, kind)
            setattr(row, kind, None)
            db.session.delete(old)
    if d.kind == "interval":
        row.interval = row.interval or IntervalSchedule()
        row.interval.every, row.interval.period = d.every, d.period
    elif d.kind == "crontab":
        row.crontab = row.crontab or CrontabSchedule()
        for name in CRON_FIELDS:
            setattr(row.crontab, name, d.crontab[name].strip())
        row.crontab.timezone = d.timezone
    elif d.kind == "solar":
        row.solar = row.solar or SolarSchedule()
        row.solar.event, row.solar.latitude, row.solar.longitude = d.event, d.latitude, d.longitude
    else:
        row.clocked = row.clocked or ClockedSchedule()
        row.clocked.clocked_time = d.clocked_time


def apply(row: PeriodicTask, d: Definition) -> None:
    for name in ("name", "task", "args", "kwargs", "queue", "start_time", "expires", "expire_seconds", "one_off",
                 "enabled", "description", "misfire_policy", "catchup_window_seconds", "overlap_policy",
                 "jitter_seconds"):
        setattr(row, name, getattr(d, name))
    row.queue = row.queue or None
    _schedule_objects(row, d)
    row.date_changed = utcnow()


def save(d: Definition, row: PeriodicTask | None = None, *, by_admin: bool = True) -> PeriodicTask:
    """Validate and write (the caller commits). An admin's change to a registry row is an override."""
    check(d, row)
    if row is None:
        row = PeriodicTask(source="admin")
        db.session.add(row)
    elif by_admin and row.source == "registry":
        default = row.default_definition or {}
        row.overridden = _differs(definition_json(d), default)
    apply(row, d)
    db.session.flush()
    return row


def _differs(current: dict, default: dict) -> bool:
    return any(current.get(k) != v for k, v in default.items() if k not in NOT_DEFINITION)


def run_now(row: PeriodicTask):
    """Enqueue a periodic task's job now, outside its schedule (raises JobsError)."""
    known_tasks()  # loads every task module
    if not arguments_usable(row):
        raise JobsError("its arguments are not a list, or its keyword arguments not an object; edit it first")
    return registry.get(row.task).apply_async(row.args, row.kwargs, queue=row.queue)


def set_enabled(row: PeriodicTask, enabled: bool) -> None:
    """Enabling validates the whole definition; disabling never does: it is how an admin stops a schedule
    the rules refuse (one stored by an older version or by SQL)."""
    d = replace(definition_of(row), enabled=enabled)
    if enabled:
        save(d, row)
        return
    if row.source == "registry":
        row.overridden = _differs(definition_json(d), row.default_definition or {})
    row.enabled = False
    row.date_changed = utcnow()
    db.session.flush()


def reset_to_default(row: PeriodicTask) -> bool:
    """Drop an admin's override of a registry row; returns whether anything changed."""
    if row.source != "registry" or not row.default_definition:
        return False
    d = definition_from_json(row.default_definition)
    changed = _differs(definition_json(definition_of(row)), row.default_definition)
    apply(row, d)
    row.overridden = False
    return changed


def definition_from_json(data: dict) -> Definition:
    values = dict(data)
    for key in ("clocked_time", "start_time", "expires"):
        if values.get(key):
            values[key] = datetime.fromisoformat(values[key])
    return Definition(**values)
