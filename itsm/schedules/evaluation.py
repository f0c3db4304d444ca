"""Evaluating a periodic task's schedule, for every reader at once: the scheduler, the pages, the CLI,
the health checks and the digests.

A row the rules would refuse can still be in the database (written by an older version, by SQL, by
a bug): its ticks may raise (croniter finds no date, a date overflows). Whatever its data makes go
wrong is caught here, once, and becomes a reason in words; the task is *invalid*, and each reader
shows it so instead of failing. Infrastructure errors (the database, the network) are not the
row's fault and go on up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from croniter import CroniterBadDateError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from itsm.schedules import service, ticks
from itsm.schedules.models import PeriodicTask
from itsm.zones import is_known_zone

T = TypeVar("T")
REASON_LENGTH = 300  # periodic_tasks.invalid_reason
NOT_THE_ROWS_FAULT = (SQLAlchemyError, RedisError, OSError, MemoryError)


class InvalidSchedule(Exception):
    """The schedule of a periodic task cannot be evaluated; ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def reason_for(err: Exception) -> str:
    if isinstance(err, CroniterBadDateError):
        text = "no date matches its crontab (like day 30 of February)"
    elif isinstance(err, OverflowError):
        text = "its ticks fall outside the dates a computer can count (the interval is far too long)"
    else:
        text = f"{type(err).__name__}: {err}"
    return f"Its schedule cannot be evaluated: {text}. Edit it or disable it."[:REASON_LENGTH]


def evaluate(row: PeriodicTask, compute: Callable[[ticks.Spec], T]) -> T:
    """``compute`` on the row's schedule; raises InvalidSchedule when the row's data makes it fail."""
    try:
        spec = service.spec_of(row)
        zone = getattr(spec, "timezone", None)
        # Checked first: opening a name that is a folder of the zone database ("America") raises an
        # OSError, which would otherwise pass for a fault of the machine.
        if zone is not None and not is_known_zone(zone):
            raise InvalidSchedule(reason_for(ValueError(f"{zone!r} is not an IANA time zone")))
        return compute(spec)
    except InvalidSchedule:
        raise
    except NOT_THE_ROWS_FAULT:
        raise
    except Exception as err:  # anything else comes from the row: a crontab, a zone, a date out of range
        raise InvalidSchedule(reason_for(err)) from err


def attempt(row: PeriodicTask, compute: Callable[[ticks.Spec], T], default: T) -> tuple[T, str | None]:
    """(``compute``'s value, None), or (``default``, the reason) for a schedule that cannot be evaluated."""
    try:
        return evaluate(row, compute), None
    except InvalidSchedule as err:
        return default, err.reason


class InvalidMarks:
    """The scheduler's marks on the tasks it cannot schedule: set with the reason (logged once), kept while
    the definition is unchanged (evaluated again once a minute, not on every pass, in case what made it
    fail has passed), cleared once the task can be scheduled."""

    def __init__(self, log: logging.Logger, retry_seconds: float = 60.0) -> None:
        self.log, self.retry_seconds = log, retry_seconds
        self.judged: dict[int, tuple[str, float]] = {}  # task id -> (definition hash, when) found invalid

    def still(self, row: PeriodicTask, digest: str) -> bool:
        judged = self.judged.get(row.id)
        return (row.invalid_reason is not None and judged is not None and judged[0] == digest
                and time.monotonic() - judged[1] < self.retry_seconds)

    def mark(self, row: PeriodicTask, digest: str, now: datetime, reason: str) -> None:
        if row.invalid_reason != reason:
            self.log.error("periodic task %s is invalid and skipped (the others keep running): %s", row.name, reason)
            row.invalid_reason, row.invalid_since = reason, now
        # Planned afresh once it can be evaluated: from its edit, or by the misfire policy when unchanged.
        row.next_tick_at, row.scheduled_hash = None, digest
        self.judged[row.id] = (digest, time.monotonic())

    def clear(self, row: PeriodicTask) -> None:
        self.judged.pop(row.id, None)
        if row.invalid_reason is not None:
            self.log.info("periodic task %s can be scheduled again", row.name)
            row.invalid_reason = row.invalid_since = None
