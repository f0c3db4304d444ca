"""Fault: two schedulers run at once for a minute (a deploy that overlaps, a second dyno)."""

from __future__ import annotations

import signal
from collections import Counter, defaultdict
from datetime import timedelta

import pytest

from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.validation import Definition
from tests.integration.test_scheduler_processes import firings, wait_until_up
from tests.processes import wait_for
from tests.reliability.conftest import job_runs, queues_idle

SOAK = timedelta(seconds=60)


# One minute of wall time: run on PostgreSQL, the production database. The 30-tick version in
# tests/integration/test_scheduler_processes.py runs the same race on both databases.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_schedulers_for_a_minute_fire_every_tick_exactly_once(app, procs, redis):
    """Fault: two ``flask scheduler`` processes on the same database and Redis for 60 s, racing for
    rq-scheduler's lock on an every-second schedule, with two worker processes taking the jobs.

    Must survive: exactly-once per tick. Over the minute (61+ ticks) every tick has one firing, one
    run of the task body and one succeeded attempt in the audit; a copy of a tick that still reached a
    worker is a recorded no-op ("skipped"); no tick is missing between the first and the last.
    """
    schedulers = [procs.start("scheduler"), procs.start("scheduler")]
    procs.worker("--concurrency", "2")
    # Everything up before the schedule exists, and overlap allowed: two ticks' jobs may run side by side
    # on a busy machine, and the overlap policy's "skipped" is not what this test is about.
    wait_until_up(redis, workers=2)
    with app.app_context():
        row = service.save(Definition(name="soak", task="t.count", kind="interval", every=1, period="seconds",
                                      args=["runs"], misfire_policy="skip", overlap_policy="allow"))
        db.session.commit()
        task_id = row.id
    first = wait_for(lambda: firings(app, task_id), timeout=60, message="the first firing")[0].tick_at
    wait_for(lambda: firings(app, task_id)[-1].tick_at >= first + SOAK, timeout=SOAK.total_seconds() + 60,
             interval=0.5, message="a minute of ticks")
    assert all(s.poll() is None for s in schedulers), "a scheduler died during the soak"
    for scheduler in schedulers:
        procs.kill(scheduler, signal.SIGTERM)  # no new ticks from here on
    wait_for(lambda: queues_idle(redis), timeout=60, interval=0.2, message="the last jobs to run")
    wait_for(lambda: all(f.status not in ("running", "retrying") for f in firings(app, task_id)), timeout=30,
             message="every firing to finish")

    rows = firings(app, task_id)
    ticks = [f.tick_at for f in rows]
    assert len(ticks) >= 61 and len(ticks) == len(set(ticks))
    gaps = Counter((b - a).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False))
    assert set(gaps) == {1.0}, gaps  # none missing, none extra
    assert {f.status for f in rows} == {"succeeded"}, Counter(f.status for f in rows)

    body_runs = Counter(v.decode() for v in redis.lrange("runs", 0, -1))
    assert set(body_runs) == {f.job_id for f in rows}  # each tick's body ran ...
    assert set(body_runs.values()) == {1}, [j for j, n in body_runs.items() if n > 1]  # ... exactly once

    attempts = defaultdict(list)
    for run in job_runs(app, task_name="t.count"):
        attempts[run.job_id].append(run.status)
    assert set(attempts) == set(body_runs)
    for job_id, statuses in attempts.items():
        assert statuses.count("succeeded") == 1 and set(statuses) <= {"succeeded", "skipped"}, (job_id, statuses)
    duplicates = sum(len(s) - 1 for s in attempts.values())
    print(f"{len(ticks)} ticks over {(ticks[-1] - ticks[0]).total_seconds():.0f}s; "
          f"{duplicates} duplicate deliveries recorded as skipped")
