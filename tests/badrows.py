"""Schedules the rules refuse, written by plain SQL as an older version (or an operator) could have:
a crontab that never fires, and an interval of a billion days from before the database bounded them."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa

from itsm.extensions import db
from itsm.schedules.models import CrontabSchedule, IntervalSchedule, PeriodicTask

BOUND_CONSTRAINTS = ("ck_interval_schedules_every_bound", "ck_interval_schedules_period")


@contextlib.contextmanager
def interval_bound_lifted():
    """The schema as it was before migration 0009 while the block runs (in the current app context);
    the bound is back afterwards, for new rows (PostgreSQL leaves the rows written meanwhile unchecked)."""
    if db.engine.dialect.name == "postgresql":
        definitions = dict(db.session.execute(sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conname IN :names")
            .bindparams(sa.bindparam("names", expanding=True)), {"names": list(BOUND_CONSTRAINTS)}).all())
        for name in definitions:
            db.session.execute(sa.text(f"ALTER TABLE interval_schedules DROP CONSTRAINT {name}"))
        db.session.commit()
        try:
            yield
        finally:
            db.session.rollback()
            for name, definition in definitions.items():
                db.session.execute(sa.text(f"ALTER TABLE interval_schedules ADD CONSTRAINT {name} {definition} "
                                           "NOT VALID"))
            db.session.commit()
    else:
        triggers = dict(db.session.execute(sa.text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'interval_schedules_bound_%'"))
            .all())
        for name in triggers:
            db.session.execute(sa.text(f"DROP TRIGGER {name}"))
        db.session.commit()
        try:
            yield
        finally:
            db.session.rollback()
            for sql in triggers.values():
                db.session.execute(sa.text(sql))
            db.session.commit()


def _task(name: str, **columns) -> int:
    values = {"task": "t.count", "args": ["bad"], "kwargs": {}, "misfire_policy": "skip", **columns}
    return db.session.execute(sa.insert(PeriodicTask.__table__).values(name=name, **values)
                              .returning(PeriodicTask.__table__.c.id)).scalar_one()


def _crontab_task(name: str, **fields) -> int:
    crontab = db.session.execute(sa.insert(CrontabSchedule.__table__).values(
        **{"minute": "0", "hour": "0", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*", **fields})
        .returning(CrontabSchedule.__table__.c.id)).scalar_one()
    task_id = _task(name, crontab_id=crontab)
    db.session.commit()
    return task_id


def insert_never_firing_crontab(name: str = "february-30") -> int:
    return _crontab_task(name, day_of_month="30", month_of_year="2", timezone="UTC")


def insert_huge_interval(name: str = "a-billion-days") -> int:
    with interval_bound_lifted():
        interval = db.session.execute(sa.insert(IntervalSchedule.__table__).values(every=10**9, period="days")
                                      .returning(IntervalSchedule.__table__.c.id)).scalar_one()
        task_id = _task(name, interval_id=interval)
        db.session.commit()
    return task_id


def insert_folder_zone(name: str = "zone-america") -> int:
    """A crontab in "America": a folder of the zone database, which ``ZoneInfo`` fails to open with an
    OSError (as if the machine were at fault), accepted by versions that only caught unknown names."""
    return _crontab_task(name, hour="9", timezone="America")


def insert_wrong_arguments(name: str = "args-a-number") -> int:
    """A good schedule whose JSON arguments are a number and keyword arguments a list."""
    interval = db.session.execute(sa.insert(IntervalSchedule.__table__).values(every=1, period="minutes")
                                  .returning(IntervalSchedule.__table__.c.id)).scalar_one()
    task_id = _task(name, args=5, kwargs=[1], interval_id=interval)
    db.session.commit()
    return task_id
