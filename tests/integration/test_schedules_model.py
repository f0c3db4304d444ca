"""Periodic task definitions: validation rules, change triggers, registry sync and overrides."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.catalog import Entry
from itsm.schedules.models import PeriodicTask, ScheduleState
from itsm.schedules.sync import sync
from itsm.schedules.validation import Definition, ValidationError

pytestmark = pytest.mark.usefixtures("redis")


def crontab(**overrides) -> Definition:
    d = Definition(name="nightly", task="t.add", kind="crontab", timezone="America/Toronto", args=[1, 2],
                   crontab={"minute": "0", "hour": "3", "day_of_month": "*", "month_of_year": "*",
                            "day_of_week": "*"})
    return replace(d, **overrides)


def version() -> int:
    return db.session.scalar(sa.select(ScheduleState.version))


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"kind": "none"}, "kind", "Choose exactly one schedule"),
        ({"task": "no.such.task"}, "task", "Unknown task"),
        ({"name": ""}, "name", "A name is required"),
        ({"crontab": {"minute": "61", "hour": "3", "day_of_month": "*", "month_of_year": "*",
                      "day_of_week": "*"}}, "minute", "Invalid cron field '61'"),
        ({"crontab": {"minute": "0", "hour": "3", "day_of_month": "*", "month_of_year": "13",
                      "day_of_week": "*"}}, "month_of_year", "Invalid cron field"),
        ({"crontab": {"minute": "0", "hour": "3", "day_of_month": "*", "month_of_year": "*",
                      "day_of_week": "funday"}}, "day_of_week", "Invalid cron field"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "Unknown time zone"),
        ({"kind": "interval", "every": 0, "period": "minutes"}, "every", "Must be 1 or more"),
        ({"kind": "interval", "every": 5, "period": "fortnights"}, "period", "Choose one of"),
        ({"kind": "solar", "event": "sunrise", "latitude": 91.0, "longitude": 0.0}, "latitude", "between -90 and 90"),
        ({"kind": "solar", "event": "sunrise", "latitude": 0.0, "longitude": -181.0}, "longitude",
         "between -180 and 180"),
        ({"kind": "solar", "event": "moonrise", "latitude": 0.0, "longitude": 0.0}, "event", "Choose one of"),
        ({"kind": "clocked", "clocked_time": datetime(2030, 1, 1, tzinfo=UTC)}, "one_off", "tick one-off"),
        ({"expires": datetime(2030, 1, 1, tzinfo=UTC), "expire_seconds": 60}, "expire_seconds", "not both"),
        ({"args": {"a": 1}}, "args", "JSON list"),
        ({"kwargs": [1]}, "kwargs", "JSON object"),
        ({"queue": "urgent"}, "queue", "Unknown queue"),
        ({"misfire_policy": "sometimes"}, "misfire_policy", "Choose one of"),
        ({"jitter_seconds": -1}, "jitter_seconds", "Between 0 and 3600"),
    ],
)
def test_each_validation_rule(app, overrides, field, message):
    with app.app_context():
        with pytest.raises(ValidationError) as info:
            service.save(crontab(**overrides))
        assert message in info.value.errors[field]
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count(PeriodicTask.id))) == 0


def test_duplicate_name_is_refused(app):
    with app.app_context():
        service.save(crontab())
        db.session.commit()
        with pytest.raises(ValidationError) as info:
            service.save(crontab(name="NIGHTLY"))
        assert "already exists" in info.value.errors["name"]


def test_database_refuses_no_schedule_or_two(app):
    with app.app_context():
        row = service.save(crontab())
        db.session.commit()
        for values in ({"crontab_id": None}, {"interval_id": _interval_id()}):
            with pytest.raises(sa.exc.IntegrityError):
                db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.id == row.id).values(**values))
                db.session.flush()
            db.session.rollback()


def _interval_id() -> int:
    from itsm.schedules.models import IntervalSchedule

    interval = IntervalSchedule(every=1, period="hours")
    db.session.add(interval)
    db.session.flush()
    return interval.id


def test_every_definition_write_bumps_the_version_but_run_bookkeeping_does_not(app):
    with app.app_context():
        start = version()
        row = service.save(crontab())
        db.session.commit()
        after_create = version()
        assert after_create > start
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=datetime.now(UTC), total_run_count=5,
                                                          next_tick_at=datetime.now(UTC)))
        db.session.commit()
        assert version() == after_create
        db.session.execute(sa.update(PeriodicTask).values(enabled=False))  # a bulk update, no ORM events
        db.session.commit()
        assert version() == after_create + 1
        db.session.execute(sa.text("UPDATE crontab_schedules SET hour = '4'"))  # raw SQL too
        db.session.commit()
        assert version() == after_create + 2
        db.session.delete(db.session.get(PeriodicTask, row.id))
        db.session.commit()
        assert version() > after_create + 2


ENTRIES = (Entry(name="ping", task="t.add", every=10, period="minutes", args=(1, 2)),
           Entry(name="report", task="t.add", cron="0 9 * * 1", timezone="Europe/Berlin", args=(3, 4)))


def test_sync_creates_then_reports_nothing(app):
    with app.app_context():
        first = sync(ENTRIES)
        assert first.created == ["ping", "report"] and first.changed
        assert not sync(ENTRIES).changed
        rows = {r.name: r for r in db.session.scalars(sa.select(PeriodicTask))}
        assert rows["report"].crontab.expression == "0 9 * * 1" and rows["report"].crontab.timezone == "Europe/Berlin"
        assert rows["ping"].interval.every == 10 and rows["ping"].source == "registry"


def test_sync_dry_run_changes_nothing(app):
    with app.app_context():
        report = sync(ENTRIES, dry_run=True)
        assert report.created == ["ping", "report"]
        assert db.session.scalar(sa.select(sa.func.count(PeriodicTask.id))) == 0


def test_sync_updates_changed_entries_and_disables_removed_ones(app):
    with app.app_context():
        sync(ENTRIES)
        changed = (Entry(name="ping", task="t.add", every=5, period="minutes", args=(1, 2)),)
        report = sync(changed)
        assert report.updated == ["ping"] and report.disabled == ["report"]
        rows = {r.name: r for r in db.session.scalars(sa.select(PeriodicTask))}
        assert rows["ping"].interval.every == 5 and not rows["report"].enabled


def test_admin_override_survives_sync_until_reset(app):
    with app.app_context():
        sync(ENTRIES)
        row = db.session.scalar(sa.select(PeriodicTask).where(PeriodicTask.name == "ping"))
        service.save(replace(service.definition_of(row), every=1, period="hours"), row)
        db.session.commit()
        assert row.overridden
        newer = (Entry(name="ping", task="t.add", every=15, period="minutes", args=(1, 2)), ENTRIES[1])
        report = sync(newer)
        assert report.kept_overrides == ["ping"] and not report.changed
        assert (row.interval.every, row.interval.period) == (1, "hours")
        report = sync(newer, reset_overrides=True)
        assert report.reset == ["ping"]
        assert (row.interval.every, row.interval.period, row.overridden) == (15, "minutes", False)


def test_reset_to_default_button_logic(app):
    with app.app_context():
        sync(ENTRIES)
        row = db.session.scalar(sa.select(PeriodicTask).where(PeriodicTask.name == "ping"))
        service.set_enabled(row, False)
        db.session.commit()
        assert row.overridden and not row.enabled
        assert service.reset_to_default(row)
        db.session.commit()
        assert row.enabled and not row.overridden
