"""Fault: Redis goes down and comes back empty (a restart without persistence)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from itsm.extensions import db
from itsm.recurring.models import RecurringTicketRun
from itsm.schedules import service
from itsm.schedules.catalog import entries
from itsm.schedules.models import PeriodicTask
from itsm.schedules.scheduler import ENTRY_PREFIX, HEARTBEAT_KEY
from itsm.schedules.sync import sync
from itsm.schedules.validation import Definition
from itsm.tickets.models import Ticket
from tests import factories
from tests.conftest import TEST_REDIS_URL
from tests.processes import wait_for
from tests.reliability.conftest import scalar

SCHEDULED = "rq:scheduler:scheduled_jobs"


def enabled_schedules(app) -> set[int]:
    with app.app_context():
        return set(db.session.scalars(sa.select(PeriodicTask.id).where(PeriodicTask.enabled.is_(True))))


def scheduled_for(redis) -> set[int]:
    """The periodic tasks that have an rq-scheduler entry (``periodic-<task id>-<tick ms>``)."""
    members = (m.decode() for m in redis.zrange(SCHEDULED, 0, -1))
    return {int(m.split("-")[1]) for m in members if m.startswith(ENTRY_PREFIX)}


def opened(app, template_id: int) -> list[Ticket]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Ticket).where(Ticket.template_id == template_id)).all()
        db.session.expunge_all()
        return rows


def successful_passes(app) -> int:
    return scalar(app, sa.select(sa.func.count(RecurringTicketRun.id)).where(RecurringTicketRun.status == "success"))


def test_after_redis_comes_back_empty_schedules_return_and_missed_tickets_open_once(app, redis_outage, procs,
                                                                                     redis):
    """Fault: Redis goes away for a few seconds: every connection of the scheduler and the worker is
    dropped and new ones are refused (a relay in front of the tests' Redis database, see
    ``RedisOutage``), then its data is gone (FLUSHDB of that database only) and it answers again.
    A recurring template falls due during the outage, while nothing can run.

    Must survive: the schedules and the recurring tickets. Within 5 s of Redis answering, every
    enabled schedule (the product's, synced, and an every-second recurring-ticket pass) has its
    rq-scheduler entry again; the ticket missed during the outage then opens exactly once, and the
    one opened before the outage is not opened again, however many passes follow.
    """
    with app.app_context():
        sync(entries())
        service.save(Definition(name="recurring-fast", task="process_recurring_tickets", kind="interval",
                                every=1, period="seconds", misfire_policy="once"))
        db.session.commit()
        before = factories.make_template("Before {date}", start=datetime.now(UTC) - timedelta(minutes=1),
                                         recurrence_interval="daily").id
    wanted = enabled_schedules(app)
    assert len(wanted) == sum(e.enabled for e in entries()) + 1  # the product's schedules and ours
    procs.start("scheduler", REDIS_URL=redis_outage.url)
    procs.worker(REDIS_URL=redis_outage.url)
    wait_for(lambda: opened(app, before), timeout=60, message="the ticket due before the outage")
    wait_for(lambda: scheduled_for(redis) >= wanted, timeout=10, message="an entry for every schedule")

    redis_outage.cut()
    with app.app_context():  # the web keeps working without Redis: a template is added meanwhile
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        during = factories.make_template("During {date}", start=due, recurrence_interval="daily").id
    wait_for(lambda: datetime.now(UTC) > due + timedelta(seconds=1.5), timeout=10, message="the due time to pass")
    assert redis.connection_pool.connection_kwargs["db"] == int(TEST_REDIS_URL.rsplit("/", 1)[1])
    redis.flushdb()  # the tests' own database only: Redis "restarted" without its data
    assert not opened(app, during)  # missed: nothing could run while Redis was away
    redis_outage.restore()
    back = time.monotonic()
    back_at = datetime.now(UTC)

    wait_for(lambda: scheduled_for(redis) >= wanted, timeout=5, interval=0.05,
             message="every schedule's rq-scheduler entry within 5 s of Redis coming back")
    restored_in = time.monotonic() - back
    assert redis.exists(HEARTBEAT_KEY)

    [ticket] = wait_for(lambda: opened(app, during), timeout=60, message="the ticket missed during the outage")
    assert ticket.occurrence_at == due and ticket.created_at >= back_at
    passes = successful_passes(app)
    wait_for(lambda: successful_passes(app) >= passes + 3, timeout=30, message="three more recurring passes")
    assert len(opened(app, during)) == 1 and len(opened(app, before)) == 1
    print(f"schedules restored {restored_in:.2f}s after Redis came back")
