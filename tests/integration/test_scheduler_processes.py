"""The scheduler as real ``flask scheduler`` and ``flask worker`` processes."""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from rq import Queue, Worker

from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from itsm.schedules.validation import Definition
from jobs.models import JobRun
from tests import badrows
from tests.processes import wait_for

pytestmark = pytest.mark.usefixtures("redis")


def add(app, **overrides) -> int:
    d = Definition(name="counter", task="t.count", kind="interval", every=1, period="hours", args=["runs"],
                   misfire_policy="skip")
    with app.app_context():
        row = service.save(replace(d, **overrides))
        db.session.commit()
        return row.id


def firings(app, task_id: int) -> list[ScheduleFiring]:
    with app.app_context():
        rows = db.session.scalars(sa.select(ScheduleFiring).where(ScheduleFiring.periodic_task_id == task_id)
                                  .order_by(ScheduleFiring.tick_at)).all()
        db.session.expunge_all()
        return rows


def wait_until_up(redis, workers: int = 1) -> None:
    """The scheduler's heartbeat and the worker processes are there: what a test measures or races
    afterwards does not include their start-up time."""
    wait_for(lambda: redis.exists("itsm:scheduler:heartbeat") and len(Worker.all(connection=redis)) >= workers,
             timeout=60, message="the scheduler and the worker processes")


def runs_of(redis, key: str = "runs") -> list[str]:
    return [v.decode() for v in redis.lrange(key, 0, -1)]


def test_an_edit_takes_effect_within_five_seconds(app, procs, redis):
    task_id = add(app)
    procs.start("scheduler")
    procs.worker()
    wait_until_up(redis)
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id)
        service.save(replace(service.definition_of(row), every=2, period="seconds"), row)
        db.session.commit()
    edited = time.monotonic()
    wait_for(lambda: runs_of(redis), timeout=10, message="the first run of the edited schedule")
    first_tick = firings(app, task_id)[0].tick_at
    # The first tick of the new schedule is at most 2 s away; its run must start within 5 s of the edit.
    assert time.monotonic() - edited < 5 + 2
    assert first_tick > datetime.now(UTC) - timedelta(seconds=10)


def test_two_schedulers_never_fire_a_tick_twice(app, procs, redis):
    """30+ ticks (every 0.5 s) with two schedulers racing for rq-scheduler's lock."""
    task_id = add(app, every=500_000, period="microseconds")
    procs.start("scheduler")
    procs.start("scheduler")
    procs.worker("--concurrency", "2")
    wait_for(lambda: len(firings(app, task_id)) >= 32, timeout=40, interval=0.5, message="32 firings")
    rows = firings(app, task_id)
    ticks = [f.tick_at for f in rows]
    assert len(ticks) == len(set(ticks))
    steps = {round((b - a).total_seconds(), 3) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert steps == {0.5}  # and none missing in between
    ran = runs_of(redis)
    assert len(ran) == len(set(ran))  # each firing's job ran its body once
    assert len(ran) >= len([f for f in rows if f.status == "succeeded"])


def test_a_duplicate_enqueue_is_a_recorded_no_op(app, procs, redis):
    task_id = add(app, every=2, period="seconds")
    procs.start("scheduler")
    wait_for(lambda: redis.zcard("rq:scheduler:scheduled_jobs") >= 1, message="an entry")
    queue = Queue("default", connection=redis)
    wait_for(lambda: queue.count >= 1, timeout=10, message="the tick's job in its queue")
    job_id = queue.job_ids[0]
    redis.rpush(queue.key, job_id)  # what a second scheduler with a lapsed lock would do
    procs.worker()
    wait_for(lambda: len(firings(app, task_id)) >= 1 and firings(app, task_id)[0].status == "succeeded",
             message="the firing")
    with app.app_context():
        wait_for(lambda: db.session.scalar(sa.select(sa.func.count()).select_from(JobRun)
                                           .where(JobRun.job_id == job_id)) == 2, message="two audit rows")
        statuses = db.session.scalars(sa.select(JobRun.status).where(JobRun.job_id == job_id)
                                      .order_by(JobRun.attempt)).all()
    assert statuses == ["succeeded", "skipped"]
    assert runs_of(redis).count(job_id) == 1


def test_redis_flush_recovers_within_five_seconds_without_losing_a_tick(app, procs, redis):
    task_id = add(app, every=1, period="seconds")
    procs.start("scheduler")
    procs.worker()
    wait_for(lambda: len(firings(app, task_id)) >= 3, timeout=15, message="three firings")
    redis.flushdb()
    flushed = datetime.now(UTC)
    wait_for(lambda: any(f.tick_at > flushed + timedelta(seconds=5) for f in firings(app, task_id)), timeout=15,
             message="firings after the flush")
    rows = firings(app, task_id)
    ticks = [f.tick_at for f in rows]
    assert len(ticks) == len(set(ticks))
    gaps = [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False)]
    assert set(gaps) == {1.0}, gaps  # no tick lost across the flush
    recovered = [f for f in rows if f.tick_at > flushed]
    assert recovered and (recovered[0].claimed_at - flushed).total_seconds() < 5


def test_one_off_fires_once_across_a_scheduler_restart(app, procs, redis):
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    task_id = add(app, name="once", kind="clocked", clocked_time=due, one_off=True, misfire_policy="once")
    scheduler = procs.start("scheduler")
    queue = Queue("default", connection=redis)
    wait_for(lambda: queue.count == 1, timeout=60, message="the one-off in its queue")
    procs.kill(scheduler, signal.SIGKILL)  # right after it fired, before any worker ran it
    procs.start("scheduler")
    procs.worker()
    wait_for(lambda: firings(app, task_id) and firings(app, task_id)[0].status == "succeeded", timeout=60,
             message="the one-off's run")
    wait_for(lambda: redis.exists("itsm:scheduler:heartbeat"), message="the restarted scheduler")
    stable_until = time.monotonic() + 3
    wait_for(lambda: time.monotonic() > stable_until, timeout=5, message="a few scheduler passes")
    assert len(firings(app, task_id)) == 1 and len(runs_of(redis)) == 1
    with app.app_context():
        assert not db.session.get(PeriodicTask, task_id).enabled


def test_overlap_skip_and_allow(app, procs, redis):
    skip = add(app, name="skip", every=1, period="seconds", args=["skip", 2.5], overlap_policy="skip")
    allow = add(app, name="allow", every=1, period="seconds", args=["allow", 2.5], overlap_policy="allow")
    procs.start("scheduler")
    procs.worker("--concurrency", "4")
    wait_for(lambda: len(firings(app, skip)) >= 5 and len(firings(app, allow)) >= 5, timeout=20,
             message="five firings each")
    skipped = [f for f in firings(app, skip) if f.status == "skipped"]
    assert skipped and all("still running" in f.reason for f in skipped)
    assert not [f for f in firings(app, allow) if f.status == "skipped"]


def test_worker_with_scheduler_runs_both(app, procs, redis):
    task_id = add(app, every=1, period="seconds")
    worker = procs.start("worker", "--concurrency", "1", "--with-scheduler")
    wait_for(lambda: len(firings(app, task_id)) >= 2, timeout=15, message="firings from the built-in scheduler")
    procs.kill(worker, signal.SIGTERM)
    assert worker.returncode == 0
    assert not redis.exists("itsm:scheduler:heartbeat")  # it stopped cleanly with the workers


def test_never_early_and_on_time_at_fractional_seconds(app, procs, redis):
    procs.start("scheduler")
    procs.worker("--concurrency", "2")
    wait_until_up(redis)
    now = datetime.now(UTC)
    ids = [add(app, name=f"at-{i}", kind="clocked", one_off=True, misfire_policy="once",
               clocked_time=now + timedelta(seconds=2 + i * 0.37)) for i in range(6)]
    wait_for(lambda: all(firings(app, i) for i in ids), timeout=20, message="every one-off to fire")
    with app.app_context():
        for task_id in ids:
            [fired] = firings(app, task_id)
            run = db.session.scalar(sa.select(JobRun).where(JobRun.job_id == fired.job_id))
            late = (run.started_at - fired.tick_at).total_seconds()
            assert 0 <= late < 3.0, (task_id, late)  # never early; the bound only allows for a busy CI machine


def test_one_bad_schedule_never_stops_the_others(app, procs, redis, client, auth):
    """A crontab that never fires and a billion-day interval, written by SQL, next to a task every second:
    the scheduler keeps running, the good task keeps firing, the bad ones are marked invalid, and every
    page and ``flask schedules list`` answer."""
    good = add(app, name="good", every=1, period="seconds")
    with app.app_context():
        bad = [badrows.insert_never_firing_crontab(), badrows.insert_huge_interval(), badrows.insert_folder_zone(),
               badrows.insert_wrong_arguments()]
    scheduler = procs.start("scheduler")
    procs.worker()
    wait_for(lambda: len(firings(app, good)) >= 3, timeout=40, message="three firings of the good task")

    def marks():
        with app.app_context():
            return [db.session.get(PeriodicTask, task_id).invalid_reason for task_id in bad]

    reasons = wait_for(lambda: all(marks()) and marks(), timeout=20, message="every bad task marked invalid")
    assert "no date matches its crontab" in reasons[0] and "far too long" in reasons[1]
    assert "'America' is not an IANA time zone" in reasons[2] and "arguments are not a list" in reasons[3]
    fired = len(firings(app, good))
    wait_for(lambda: len(firings(app, good)) >= fired + 2, timeout=20, message="the good task firing on")
    assert scheduler.poll() is None
    assert not any(firings(app, task_id) for task_id in bad)
    auth.login()
    for url in ("/admin/schedules", "/admin/automation", *(f"/admin/schedules/{i}/edit" for i in bad),
                *(f"/admin/schedules/{i}/history" for i in bad)):
        assert client.get(url).status_code == 200, url
    listing = procs.run("schedules", "list")
    assert listing.returncode == 0 and listing.stdout.count("INVALID") == 4, listing.stderr
    assert sorted(client.get("/readyz").get_json()["checks"]["schedules"]["invalid"]) == [
        "a-billion-days", "args-a-number", "february-30", "zone-america"]
    assert procs.logs().count("is invalid and skipped") == 4  # logged once each, not on every pass
    # Fixed by an edit: the mark goes, the task is planned.
    with app.app_context():
        row = db.session.get(PeriodicTask, bad[0])
        definition = service.definition_of(row)
        service.save(replace(definition, crontab={**definition.crontab, "day_of_month": "28"}), row)
        db.session.commit()
    wait_for(lambda: marks()[0] is None, timeout=10, message="the mark cleared")
    with app.app_context():
        assert db.session.get(PeriodicTask, bad[0]).next_tick_at is not None


def _last_ticks(app, ids: dict[str, int]) -> dict[str, datetime]:
    """Once nothing new fires for a second: the newest tick of each task."""
    seen: list = []

    def settled():
        now = {name: len(firings(app, i)) for name, i in ids.items()}
        seen.append(now)
        return len(seen) > 1 and seen[-2] == now

    wait_for(settled, timeout=20, interval=1.0, message="the firings to settle")
    return {name: firings(app, i)[-1].tick_at for name, i in ids.items()}


def _check_gap(app, ids: dict[str, int], before: dict[str, datetime], resumed: datetime) -> None:
    """After a gap that ended at ``resumed`` (the scheduler started again, or the task was enabled): ``skip``
    and ``once`` run no tick that was due a period before then, only the latest one and those after it;
    ``all`` runs every tick, none missing."""
    for name, task_id in ids.items():
        ticks = [f.tick_at for f in firings(app, task_id) if f.tick_at > before[name]]
        steps = {round((b - a).total_seconds(), 3) for a, b in zip(ticks, ticks[1:], strict=False)}
        assert len(ticks) >= 3 and steps == {1.0}, (name, ticks)  # nothing missed once it runs again
        if name == "all":
            assert ticks[0] == before[name] + timedelta(seconds=1), (name, ticks)
        else:
            assert ticks[0] > resumed - timedelta(seconds=1), (name, resumed, ticks)  # one run for the gap


def _runs_again(app, ids: dict[str, int], before: dict[str, datetime]) -> None:
    """Each task has run at least three ticks since the gap (the first of them may have waited for it)."""
    wait_for(lambda: all(len([f for f in firings(app, i) if f.tick_at > before[name]]) >= 3
                         and firings(app, i)[-1].tick_at > datetime.now(UTC) - timedelta(seconds=3)
                         for name, i in ids.items()), timeout=60, message="three firings after the gap")


def test_a_short_stop_or_disable_runs_what_the_misfire_policy_says(app, procs, redis):
    """Every second; the scheduler stopped for about 8 s (a deploy), then the tasks disabled for 8 s:
    although both gaps are shorter than the 60-second grace, ``once`` and ``skip`` run one tick for each
    gap, not each missed one in a burst; ``all`` runs each."""
    ids = {policy: add(app, name=policy, every=1, period="seconds", args=[policy], misfire_policy=policy,
                       overlap_policy="allow") for policy in ("skip", "once", "all")}
    scheduler = procs.start("scheduler")
    procs.worker("--concurrency", "4")
    wait_for(lambda: all(len(firings(app, i)) >= 2 for i in ids.values()), timeout=60, message="firings")
    procs.kill(scheduler, signal.SIGTERM)
    before = _last_ticks(app, ids)
    time.sleep(6)  # the scheduler is down: the gap itself (its start-up below makes it longer)
    resumed = datetime.now(UTC)
    procs.start("scheduler")
    _runs_again(app, ids, before)
    _check_gap(app, ids, before, resumed)

    with app.app_context():
        for task_id in ids.values():
            service.set_enabled(db.session.get(PeriodicTask, task_id), False)
        db.session.commit()
    before = _last_ticks(app, ids)
    time.sleep(8)  # disabled: the gap itself
    resumed = datetime.now(UTC)
    with app.app_context():
        for task_id in ids.values():
            service.set_enabled(db.session.get(PeriodicTask, task_id), True)
        db.session.commit()
    _runs_again(app, ids, before)
    _check_gap(app, ids, before, resumed)
