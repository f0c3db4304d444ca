"""The scheduler loop reloads the schedules only when something may have changed: the version the database
triggers bump on every edit, a planned tick coming due, Redis losing its marker, or the slow safety reload.
A pass in between reads the version and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.schedules import scheduler as scheduler_module
from itsm.schedules.scheduler import entry_id
from tests.integration.test_scheduler_logic import T0, minutely
from tests.integration.test_scheduler_logic import make as _make  # noqa: F401  (a fixture, found by this name)


@pytest.fixture
def harness(request):
    """The scheduler logic tests' harness (their ``make`` fixture): tasks saved at chosen moments, one scheduler."""
    return request.getfixturevalue("_make")


@pytest.fixture
def statements(app):
    """The SQL statements run while it is active, as (lowercase) strings."""
    seen: list[str] = []

    def record(conn, cursor, statement, *_):
        seen.append(statement.lower())

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", record)


def refresh(harness, app, now) -> None:
    with app.app_context():
        harness.scheduler.refresh(now)


def test_a_quiet_pass_reads_only_the_version(harness, app, statements):
    harness.add(minutely())
    refresh(harness, app, T0)  # the first pass reconciles
    assert any("from periodic_tasks" in s for s in statements)
    statements.clear()
    refresh(harness, app, T0 + timedelta(seconds=20))
    assert statements and all("schedule_state" in s or s.strip() == "begin" for s in statements), statements


def test_an_edit_reloads_on_the_next_pass(harness, app):
    task_id = harness.add(minutely())
    refresh(harness, app, T0)
    assert list(harness.entries()) == [entry_id(task_id, T0 + timedelta(minutes=1))]
    harness.update(task_id, enabled=False)  # plain SQL: the trigger bumps the version all the same
    refresh(harness, app, T0 + timedelta(seconds=1))
    assert harness.entries() == {}


def test_a_tick_coming_due_plans_the_next(harness, app):
    task_id = harness.add(minutely())
    refresh(harness, app, T0)
    first = T0 + timedelta(minutes=1)
    harness.hand_over(task_id, first)
    refresh(harness, app, first - timedelta(seconds=1))  # not due yet: nothing to do
    assert harness.entries() == {}
    refresh(harness, app, first + timedelta(milliseconds=1))
    assert list(harness.entries()) == [entry_id(task_id, first + timedelta(minutes=1))]


def test_redis_emptied_reloads_at_once(harness, app, redis):
    harness.add(minutely())
    refresh(harness, app, T0)
    before = harness.entries()
    redis.flushdb()
    refresh(harness, app, T0 + timedelta(seconds=1))
    assert harness.entries() == before


def test_the_safety_reload_puts_back_what_went_missing_unseen(harness, app, redis, monkeypatch):
    task_id = harness.add(minutely())
    refresh(harness, app, T0)
    member = entry_id(task_id, T0 + timedelta(minutes=1))
    redis.zrem("rq:scheduler:scheduled_jobs", member)  # gone without any change the loop could see
    refresh(harness, app, T0 + timedelta(seconds=1))
    assert harness.entries() == {}
    monkeypatch.setattr(scheduler_module, "SAFETY_RELOAD_SECONDS", 0.0)
    refresh(harness, app, T0 + timedelta(seconds=2))
    assert list(harness.entries()) == [member]
