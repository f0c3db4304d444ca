"""Fault: Redis loses its data (FLUSHDB, or a restart of a Redis that keeps nothing on disk) under running
workers: their registration, and every job it held."""

from __future__ import annotations

import time

from jobs import liveness
from tests import jobtasks
from tests.processes import wait_for
from tests.reliability.conftest import final_runs


def ping_ok(procs) -> bool:
    return procs.run("jobs", "ping", timeout=30).returncode == 0


def test_workers_register_again_after_redis_loses_its_data(app, client, auth, procs, redis):
    """Fault: FLUSHDB of the tests' Redis database while two worker processes run, one of them busy with a
    job (``t.gated``) and one idle, and a scheduler runs.

    Must survive: the workers' visibility. Within a few heartbeats (1 s here) both workers are registered
    again, the busy one as busy with its job: ``flask jobs ping`` exits 0 and /readyz's workers check is ok
    with 2 alive; the held job finishes and a new job runs."""
    procs.start("scheduler")
    procs.worker("--concurrency", "2")
    wait_for(lambda: ping_ok(procs), timeout=60, interval=0.5, message="flask jobs ping to pass at start")
    with app.app_context():
        held = jobtasks.gated.delay("busy")
    wait_for(lambda: redis.get("busy:started"), timeout=30, message="the held job to start")

    redis.flushdb()
    flushed = time.monotonic()
    assert not liveness.workers(redis)  # RQ's worker registry is gone with the data
    wait_for(lambda: ping_ok(procs), timeout=30, interval=0.2, message="flask jobs ping to pass after FLUSHDB")
    back_in = time.monotonic() - flushed

    def both_back():
        found = liveness.workers(redis)
        return found if len(found) == 2 and all(w.alive for w in found) else None
    found = wait_for(both_back, timeout=10, message="both workers registered and alive")
    assert sorted(w.state for w in found) == ["busy", "idle"]
    assert all(set(w.queues) == {"high", "default", "low"} for w in found)
    busy = next(w for w in found if w.busy)
    assert redis.hget(f"rq:worker:{busy.name}", "current_job").decode() == held.id
    for queue in ("high", "default", "low"):  # the per-queue worker sets too (rq info, rq-dashboard)
        assert redis.scard(f"rq:workers:{queue}") == 2

    auth.login()  # the checks' details are shown to admins
    ready = client.get("/readyz")
    workers = ready.get_json()["checks"]["workers"]
    assert workers["ok"] and workers["alive"] == 2, ready.get_json()

    redis.set("busy:go", 1)
    assert final_runs(app, held.id, 1)[0].status == "succeeded"
    with app.app_context():
        after = jobtasks.add.delay(2, 3)
    [run] = final_runs(app, after.id, 1)
    assert run.status == "succeeded" and run.result == 5
    print(f"flask jobs ping passed {back_in:.1f}s after FLUSHDB")
