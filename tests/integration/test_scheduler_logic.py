"""The scheduler's decisions against real Redis and a real database, at chosen moments in time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job

from itsm.extensions import db
from itsm.schedules import firing, service
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from itsm.schedules.scheduler import PeriodicScheduler, entry_id, entry_time
from itsm.schedules.validation import Definition
from tests import badrows

ZSET = "rq:scheduler:scheduled_jobs"
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # a Monday; the far future keeps real time out of the way


def minutely(**overrides) -> Definition:
    d = Definition(name="minutely", task="t.count", kind="interval", every=1, period="minutes", args=["k"])
    return replace(d, **overrides)


@pytest.fixture
def make(app, redis):
    """Create a periodic task and a scheduler; reconcile(now) runs one pass at that moment."""
    class Harness:
        def __init__(self):
            self.scheduler = PeriodicScheduler(app, redis)

        def add(self, d: Definition, at: datetime = T0) -> int:
            """Saved at ``at`` on this test's clock (a new task's ticks count from when it was saved)."""
            with app.app_context():
                row = service.save(d)
                db.session.commit()
                task_id = row.id
            self.update(task_id, date_changed=at)
            return task_id

        def reconcile(self, now: datetime) -> None:
            with app.app_context():
                self.scheduler.reconcile(now)

        def entries(self) -> dict[str, float]:
            return {m.decode(): s for m, s in redis.zrange(ZSET, 0, -1, withscores=True)}

        def row(self, task_id: int) -> PeriodicTask:
            with app.app_context():
                row = db.session.get(PeriodicTask, task_id)
                db.session.expunge(row)
                return row

        def update(self, task_id: int, **values) -> None:
            with app.app_context():
                db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.id == task_id).values(**values))
                db.session.commit()

        def fired(self, task_id: int, tick: datetime) -> None:
            with app.app_context():
                db.session.add(ScheduleFiring(periodic_task_id=task_id, tick_at=tick, job_id="earlier",
                                              status="succeeded"))
                db.session.commit()

        def hand_over(self, task_id: int, tick: datetime) -> None:
            """What rq-scheduler does when the entry is due: move it to its queue."""
            member = entry_id(task_id, tick)
            redis.zrem(ZSET, member)
            redis.hset(Job.key_for(member), "status", "queued")

    return Harness()


def test_new_task_waits_for_its_next_tick(make):
    task_id = make.add(minutely())
    make.reconcile(T0 + timedelta(seconds=10))
    assert make.entries() == {entry_id(task_id, T0 + timedelta(minutes=1)): (T0 + timedelta(minutes=1)).timestamp()}


def test_edit_replaces_the_entry(make, app):
    task_id = make.add(minutely())
    make.reconcile(T0)
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        service.save(replace(service.definition_of(row), every=5), row)
        db.session.commit()
    make.update(task_id, date_changed=T0)  # edited at T0 on this test's clock
    make.reconcile(T0 + timedelta(seconds=1))
    assert list(make.entries()) == [entry_id(task_id, T0 + timedelta(minutes=5))]


@pytest.mark.parametrize(("misfire", "fires"), [("once", True), ("all", True), ("skip", False)])
def test_a_one_off_due_before_the_scheduler_saw_it_follows_the_misfire_policy(make, misfire, fires):
    """Saved at T0 for T0 + 30 s, first seen by a scheduler at T0 + 5 min (it was down, or slow to
    start): the tick was missed, and the misfire policy decides, as for any downtime."""
    due = T0 + timedelta(seconds=30)
    task_id = make.add(minutely(name="once", kind="clocked", clocked_time=due, one_off=True, misfire_policy=misfire))
    make.reconcile(T0 + timedelta(minutes=5))
    assert (entry_id(task_id, due) in make.entries()) is fires
    assert len(make.entries()) == (1 if fires else 0)


def test_a_one_off_seen_within_the_grace_is_on_its_way_at_once(make):
    due = T0 + timedelta(seconds=2)
    task_id = make.add(minutely(name="once", kind="clocked", clocked_time=due, one_off=True, misfire_policy="skip"))
    make.reconcile(due + timedelta(seconds=5))  # late by less than the grace: not missed, whatever the policy
    assert make.entries() == {entry_id(task_id, due): due.timestamp()}


def test_handed_over_tick_advances(make):
    task_id = make.add(minutely())
    make.reconcile(T0 + timedelta(seconds=1))
    first = T0 + timedelta(minutes=1)
    make.hand_over(task_id, first)
    make.reconcile(first + timedelta(seconds=1))
    assert list(make.entries()) == [entry_id(task_id, first + timedelta(minutes=1))]
    assert make.row(task_id).last_tick_at == first


def test_redis_flush_re_adds_the_same_entry(make, redis):
    make.add(minutely())
    make.reconcile(T0)
    before = make.entries()
    redis.flushdb()
    make.reconcile(T0 + timedelta(seconds=2))
    assert make.entries() == before


def test_a_handed_tick_lost_before_it_ran_is_sent_again(make, redis):
    task_id = make.add(minutely())
    make.reconcile(T0)
    first = T0 + timedelta(minutes=1)
    make.hand_over(task_id, first)
    make.reconcile(first + timedelta(seconds=1))
    redis.flushdb()  # the queue and the job vanish before any worker claimed the tick
    make.reconcile(first + timedelta(seconds=2))
    assert entry_id(task_id, first) in make.entries()


@pytest.mark.parametrize(("misfire", "expected"), [("skip", 0), ("once", 0), ("all", 9)])
def test_re_enabling_follows_the_misfire_policy(make, misfire, expected):
    """Off for ten minutes: the latest tick (30 s late) runs as itself; ``once`` needs no other run."""
    task_id = make.add(minutely(misfire_policy=misfire))
    make.reconcile(T0)
    make.update(task_id, enabled=False)
    make.reconcile(T0 + timedelta(seconds=30))
    assert make.entries() == {}
    make.update(task_id, enabled=True, last_tick_at=T0)
    make.fired(task_id, T0)
    now = T0 + timedelta(minutes=10, seconds=30)
    make.reconcile(now)
    late = entry_id(task_id, T0 + timedelta(minutes=10))
    assert late in make.entries()  # within the grace: fired late, whatever the policy
    missed = [m for m, score in make.entries().items() if score < now.timestamp() and m != late]
    assert len(missed) == expected


@pytest.mark.parametrize(("misfire", "expected"), [("skip", 1), ("once", 1), ("all", 7)])
def test_a_restart_after_a_short_gap_is_decided_by_the_misfire_policy(make, misfire, expected):
    """Every 5 s; the scheduler stops after handing over T0 + 5 s, with T0 + 10 s waiting in rq-scheduler,
    and a new one starts 30 s later. The waiting entry was missed like the five ticks after it: only the
    latest (T0 + 40 s) runs as itself, and the policy decides about the others, although the gap is shorter
    than the grace."""
    task_id = make.add(minutely(every=5, period="seconds", misfire_policy=misfire))
    make.reconcile(T0 + timedelta(seconds=1))
    make.hand_over(task_id, T0 + timedelta(seconds=5))
    make.reconcile(T0 + timedelta(seconds=5.1))
    waiting = entry_id(task_id, T0 + timedelta(seconds=10))
    assert list(make.entries()) == [waiting]
    make.scheduler = PeriodicScheduler(make.scheduler.app, make.scheduler.connection)  # the restart
    now = T0 + timedelta(seconds=40.2)
    make.reconcile(now)
    runs = sorted(make.entries(), key=make.entries().get)
    assert len(runs) == expected
    assert runs[-1] == entry_id(task_id, T0 + timedelta(seconds=40))
    if misfire != "all":
        assert waiting not in runs
    assert make.row(task_id).next_tick_at == T0 + timedelta(seconds=40)


def test_an_entry_waiting_for_its_jitter_is_not_missed(make):
    """Every second with up to an hour's jitter: later ticks pass while the entry waits, as they should."""
    task_id = make.add(minutely(every=1, period="seconds", jitter_seconds=3600))
    make.reconcile(T0)
    [member] = make.entries()
    due = datetime.fromtimestamp(make.entries()[member], UTC)
    assert due > T0 + timedelta(seconds=3)  # the jitter drawn for this tick leaves later ticks due before it
    make.reconcile(due - timedelta(seconds=0.05))
    assert list(make.entries()) == [member]
    assert make.row(task_id).next_tick_at == T0 + timedelta(seconds=1)


def test_disabled_expired_and_future_start(make):
    disabled = make.add(minutely(name="off", enabled=False))
    expired = make.add(minutely(name="old", expires=T0 - timedelta(days=1)))
    later = make.add(minutely(name="later", start_time=T0 + timedelta(hours=2, seconds=30)))
    make.reconcile(T0)
    members = list(make.entries())
    assert not any(m.startswith(f"periodic-{disabled}-") or m.startswith(f"periodic-{expired}-") for m in members)
    assert members == [entry_id(later, T0 + timedelta(hours=2, seconds=30))]  # anchored on the start time


def test_jitter_is_bounded_stable_and_never_early(make, redis):
    task_id = make.add(minutely(jitter_seconds=20))
    make.reconcile(T0)
    tick = T0 + timedelta(minutes=1)
    score = make.entries()[entry_id(task_id, tick)]
    assert tick.timestamp() <= score <= tick.timestamp() + 20
    assert score == entry_time(task_id, tick, 20)
    redis.flushdb()
    make.reconcile(T0 + timedelta(seconds=1))
    assert make.entries()[entry_id(task_id, tick)] == score


def test_cron_entries_use_the_schedule_zone(make):
    task_id = make.add(minutely(name="toronto", kind="crontab", timezone="America/Toronto",
                                crontab={"minute": "0", "hour": "9", "day_of_month": "*", "month_of_year": "*",
                                         "day_of_week": "1-5"}))
    make.reconcile(T0)
    assert list(make.entries()) == [entry_id(task_id, datetime(2030, 1, 7, 14, 0, tzinfo=UTC))]  # 09:00 EST


# -- claims ------------------------------------------------------------------------------------

def test_claim_is_exactly_once_per_tick(make, app):
    task_id = make.add(minutely())
    with app.app_context():
        assert firing.claim(task_id, T0, "job-a", 1) is None
        assert firing.claim(task_id, T0, "job-b", 1) == "this tick already fired (duplicate enqueue)"
        assert firing.claim(task_id, T0, "job-a", 2) is not None  # still running: a duplicate push, not a retry
        firing.finish(task_id, T0, "job-a", "retrying")
        assert firing.claim(task_id, T0, "job-a", 3) is None  # its own retry may go on
        row = db.session.get(PeriodicTask, task_id)
        assert row.total_run_count == 1 and row.last_run_at is not None


@pytest.mark.parametrize(("overlap", "expected"), [("skip", "still running"), ("allow", None)])
def test_overlap_policy(make, app, overlap, expected):
    task_id = make.add(minutely(overlap_policy=overlap))
    with app.app_context():
        assert firing.claim(task_id, T0, "first", 1) is None
        reason = firing.claim(task_id, T0 + timedelta(minutes=1), "second", 1)
        assert (reason is None) if expected is None else (expected in reason)
        firing.finish(task_id, T0, "first", "succeeded")
        assert firing.claim(task_id, T0 + timedelta(minutes=2), "third", 1) is None


def test_expire_seconds_skips_a_stale_tick(make, app):
    task_id = make.add(minutely(expire_seconds=30))
    with app.app_context():
        reason = firing.claim(task_id, datetime.now(UTC) - timedelta(minutes=5), "late", 1)
        assert reason.startswith("expired")
        statuses = db.session.scalars(sa.select(ScheduleFiring.status)).all()
        assert statuses == ["skipped"]


def test_one_off_disables_itself_when_claimed(make, app):
    task_id = make.add(minutely(name="once", kind="clocked", clocked_time=T0, one_off=True))
    with app.app_context():
        assert firing.claim(task_id, T0, "only", 1) is None
        assert not db.session.get(PeriodicTask, task_id).enabled


def test_a_schedule_that_cannot_be_evaluated_is_marked_invalid_and_the_others_keep_their_plan(make, app):
    good = make.add(minutely())
    with app.app_context():
        never = badrows.insert_never_firing_crontab()
        huge = badrows.insert_huge_interval()
    seen = T0 + timedelta(seconds=1)
    make.reconcile(seen)
    assert list(make.entries()) == [entry_id(good, T0 + timedelta(minutes=1))]
    for task_id, words in ((never, "no date matches its crontab"), (huge, "far too long")):
        row = make.row(task_id)
        assert words in row.invalid_reason and row.invalid_since == seen and row.next_tick_at is None
    make.reconcile(seen + timedelta(seconds=1))  # still invalid, still skipped, the mark kept as it was
    assert make.row(never).invalid_since == seen
    # Edited into a schedule that fires: the mark goes and it is planned from its edit.
    with app.app_context():
        row = db.session.get(PeriodicTask, never)
        service.save(replace(service.definition_of(row), crontab={**service.definition_of(row).crontab,
                                                                   "day_of_month": "28"}), row)
        db.session.commit()
    make.update(never, date_changed=T0 + timedelta(seconds=2))
    make.reconcile(T0 + timedelta(seconds=3))
    row = make.row(never)
    assert row.invalid_reason is None and row.invalid_since is None
    assert row.next_tick_at == datetime(2030, 2, 28, tzinfo=UTC)  # the 28th of February
    assert entry_id(never, row.next_tick_at) in make.entries()


def test_a_task_missing_from_the_code_is_marked_invalid(make):
    task_id = make.add(minutely())
    make.update(task_id, task="t.removed_in_this_version")
    make.reconcile(T0 + timedelta(seconds=1))
    assert make.entries() == {}
    assert "'t.removed_in_this_version' is not in this version's code" in make.row(task_id).invalid_reason
