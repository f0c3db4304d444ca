"""The job runtime with real Redis and real ``flask worker`` processes."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.scheduler import RQScheduler

from itsm.extensions import db
from jobs.models import JobRun
from jobs.worker import ItsmWorker
from tests import jobtasks
from tests.processes import wait_for

pytestmark = pytest.mark.usefixtures("redis")


def runs(app, job_id: str) -> list[JobRun]:
    with app.app_context():
        rows = db.session.scalars(db.select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt)).all()
        db.session.expunge_all()
        return rows


def final_runs(app, job_id: str, count: int, timeout: float = 30) -> list[JobRun]:
    """Wait until the job has ``count`` attempts and the last one is final."""
    def done():
        rows = runs(app, job_id)
        if len(rows) == count and rows[-1].status in ("succeeded", "failed", "lost"):
            return rows
        return None
    return wait_for(done, timeout=timeout, message=f"{count} finished attempt(s) of {job_id}")


def test_success_is_audited(app, procs):
    with app.app_context():
        handle = jobtasks.add.delay(2, 3)
        queued = runs(app, handle.id)
        assert [(r.status, r.attempt, r.task_name, r.queue) for r in queued] == [("queued", 1, "t.add", "default")]
    procs.worker()
    [run] = final_runs(app, handle.id, 1)
    assert run.status == "succeeded" and run.result == 5
    assert run.args_summary == "2, 3"
    assert run.enqueued_at <= run.started_at <= run.finished_at
    assert run.duration_seconds >= 0 and run.worker


def test_autoretry_then_success_shares_one_id(app, procs, redis):
    procs.worker()
    with app.app_context():
        handle = jobtasks.flaky.delay("calls", 2)
    rows = final_runs(app, handle.id, 3)
    assert [r.status for r in rows] == ["retrying", "retrying", "succeeded"]
    assert [r.attempt for r in rows] == [1, 2, 3]
    assert rows[0].error_type == "Flaky" and "call 1 fails" in rows[0].error_message
    assert "Traceback" in rows[0].traceback
    assert int(redis.get("calls")) == 3


def test_max_retries_then_failed_registry(app, procs, redis):
    procs.worker()
    with app.app_context():
        handle = jobtasks.always_fails.delay("calls")
    rows = final_runs(app, handle.id, 3)
    assert [r.status for r in rows] == ["retrying", "retrying", "failed"]
    assert int(redis.get("calls")) == 3  # max_retries=2: the first run and two retries
    # RQ files the job as failed just after the audit row (and the failure hooks) are written.
    wait_for(lambda: handle.id in FailedJobRegistry(queue=Queue("default", connection=redis)).get_job_ids(),
             timeout=10, message="the job in RQ's failed registry")


def test_dont_autoretry_for_wins(app, procs, redis):
    procs.worker()
    with app.app_context():
        value_error = jobtasks.filtered.delay("v", "value")
        key_error = jobtasks.filtered.delay("k", "key")
    assert [r.status for r in final_runs(app, value_error.id, 1)] == ["failed"]
    assert [r.status for r in final_runs(app, key_error.id, 4)] == ["retrying"] * 3 + ["failed"]
    assert int(redis.get("v")) == 1 and int(redis.get("k")) == 4


def test_backoff_sequence_and_cap(app, procs, redis):
    """retry_backoff=1, max 2, no jitter: waits of 1, 2, 2 seconds, never sleeping in the worker."""
    procs.worker()
    with app.app_context():
        handle = jobtasks.backoff.delay("times")
        other = jobtasks.add.apply_async((1, 1), countdown=1)
    rows = final_runs(app, handle.id, 4, timeout=40)
    assert [r.status for r in rows] == ["retrying"] * 3 + ["failed"]
    planned = [(rows[i + 1].scheduled_for - rows[i].finished_at).total_seconds() for i in range(3)]
    assert [round(p) for p in planned] == [1, 2, 2]
    starts = [float(t) for t in redis.lrange("times", 0, -1)]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    for gap, wanted in zip(gaps, (1, 2, 2), strict=True):
        assert wanted - 1.0 <= gap <= wanted + 4, gaps  # RQ's scheduler works in whole seconds; CI is busy
    # The worker was free meanwhile: another job finished while the retries waited.
    assert final_runs(app, other.id, 1)[0].finished_at < rows[-1].started_at


def test_jitter_stays_within_bounds(app, procs, redis):
    procs.worker()
    with app.app_context():
        handle = jobtasks.jitter.delay("times")
    rows = final_runs(app, handle.id, 4, timeout=40)
    planned = [(rows[i + 1].scheduled_for - rows[i].finished_at).total_seconds() for i in range(3)]
    for seconds, cap in zip(planned, (2, 3, 3), strict=True):  # min(3, 2 * 2**n), then randrange(cap + 1)
        assert -0.1 <= seconds <= cap + 0.1, planned


def test_bound_task_retry_with_countdown(app, procs, redis):
    procs.worker()
    with app.app_context():
        handle = jobtasks.bound.delay("seen", 2)
    rows = final_runs(app, handle.id, 3)
    assert rows[-1].result == 2
    assert redis.lrange("seen", 0, -1) == [f"{handle.id}:{n}".encode() for n in range(3)]
    assert all(0.9 <= (rows[i + 1].scheduled_for - rows[i].finished_at).total_seconds() <= 1.1 for i in range(2))


def test_retry_without_exception_past_max_is_max_retries_exceeded(app, procs):
    procs.worker()
    with app.app_context():
        handle = jobtasks.no_more.delay()
    rows = final_runs(app, handle.id, 2)
    assert rows[-1].status == "failed" and rows[-1].error_type == "MaxRetriesExceededError"


def test_hard_time_limit(app, procs):
    procs.worker()
    with app.app_context():
        handle = jobtasks.hard_limit.delay(30)
    [run] = final_runs(app, handle.id, 1)
    assert run.status == "failed" and run.error_type == "JobTimeoutException"
    assert run.duration_seconds < 10


def test_soft_time_limit_lets_the_job_clean_up(app, procs, redis):
    procs.worker()
    with app.app_context():
        handle = jobtasks.soft_limit.delay("cleanup")
    [run] = final_runs(app, handle.id, 1)
    assert run.status == "failed" and run.error_type == "SoftTimeLimitExceeded"
    assert redis.get("cleanup") == b"cleaned up"
    assert 0.9 <= run.duration_seconds < 5


def test_on_failure_hook_runs_once_after_final_failure(app, procs, redis):
    procs.worker()
    with app.app_context():
        handle = jobtasks.hooked.delay()
    final_runs(app, handle.id, 1)
    wait_for(lambda: redis.llen("failures") == 1, message="the failure hook")
    assert redis.lrange("failures", 0, -1) == [f"t.hooked:{handle.id}:RuntimeError".encode()]


def test_killed_worker_job_runs_again_on_another_worker(app, procs, redis):
    """Late acknowledgement: SIGKILL the whole worker mid-job; a second worker runs it again."""
    first = procs.worker()
    with app.app_context():
        handle = jobtasks.slow.delay("k", 60)
    wait_for(lambda: redis.get("k:started") == b"1", message="the job to start")
    procs.kill(first)  # the supervisor and its child, like a machine dying
    procs.worker()
    rows = final_runs(app, handle.id, 2, timeout=30)
    assert [r.status for r in rows] == ["lost", "succeeded"]
    assert rows[0].error_type == "WorkerLost"
    assert int(redis.get("k:completed")) == 1


def test_killed_job_without_late_ack_lands_in_failed(app, procs, redis):
    first = procs.worker()
    with app.app_context():
        handle = jobtasks.slow_early_ack.delay("e", 60)
    wait_for(lambda: redis.get("e:started") == b"1", message="the job to start")
    procs.kill(first)
    procs.worker()
    failed = FailedJobRegistry(queue=Queue("default", connection=redis))
    wait_for(lambda: handle.id in failed.get_job_ids(), timeout=30, message="the job in the failed registry")
    rows = runs(app, handle.id)
    assert [r.status for r in rows] == ["lost"]
    assert int(redis.get("e:started")) == 1


def test_worker_process_crash_is_restarted_by_the_supervisor(app, procs, redis):
    supervisor = procs.worker()
    with app.app_context():
        handle = jobtasks.slow.delay("c", 60)
    wait_for(lambda: redis.get("c:started") == b"1", message="the job to start")
    running = wait_for(lambda: [r for r in runs(app, handle.id) if r.status == "running"],
                       message="the running row (written once a job runs for a second)")
    child = int(running[0].worker.split(".")[-2])
    os.kill(child, signal.SIGKILL)  # only the process running the job
    rows = final_runs(app, handle.id, 2, timeout=30)
    assert [r.status for r in rows] == ["lost", "succeeded"]
    assert supervisor.poll() is None


def test_sigterm_finishes_the_current_job(app, procs, redis):
    worker = procs.worker()
    with app.app_context():
        handle = jobtasks.slow.delay("t", 2)
    wait_for(lambda: redis.get("t:started") == b"1", message="the job to start")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert [r.status for r in runs(app, handle.id)] == ["succeeded"]


@pytest.mark.parametrize("stopping", [True, False])
def test_maintenance_never_restarts_rq_scheduler_once_stopping(redis, stopping):
    """The deterministic half of the test below, in this process with the real Redis: maintenance falls
    due with RQ's scheduler process gone. While the worker is stopping it must not start a new one."""
    worker = ItsmWorker(["default"], connection=redis, name="maintenance-test")
    worker.scheduler = RQScheduler(worker.queues, connection=redis)
    worker.last_cleaned_at = datetime.now(UTC) - timedelta(hours=1)
    worker._stop_requested = stopping
    worker.run_maintenance_tasks()
    process = worker.scheduler._process
    if process is not None:  # the control case: a running worker does get its scheduler back
        os.kill(process.pid, signal.SIGTERM)
        process.join(timeout=10)
    assert (process is None) is stopping


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_just_before_a_job_ends_stops_the_worker(app, procs, redis):
    """The job ends well within a second of SIGTERM, after a maintenance pass fell due (every second in
    tests). RQ's maintenance would start its scheduler process again after the shutdown had stopped it,
    and that new process ignored the stop (RQ drops a second signal within a second): the worker hung."""
    worker = procs.worker()
    with app.app_context():
        handle = jobtasks.gated.delay("g")
    wait_for(lambda: redis.get("g:started"), message="the job to start")
    time.sleep(1.5)  # the fault's timing: a maintenance pass is now due when the job ends
    os.killpg(worker.pid, signal.SIGTERM)
    redis.set("g:go", 1)
    assert worker.wait(timeout=15) == 0
    assert [r.status for r in runs(app, handle.id)] == ["succeeded"]


def test_burst_and_max_jobs(app, procs):
    with app.app_context():
        ids = jobtasks.add.apply_many([((i, i), {}) for i in range(20)])
    worker = procs.worker("--burst", "--max-jobs", "3")
    assert worker.wait(timeout=60) == 0
    with app.app_context():
        done = db.session.scalar(db.select(db.func.count()).select_from(JobRun)
                                 .where(JobRun.job_id.in_(ids), JobRun.status == "succeeded"))
    assert done == 20
    assert len({r.worker for i in ids for r in runs(app, i)}) >= 7  # recycled every 3 jobs


def test_requeue_failed(app, procs, redis):
    with app.app_context():
        handle = jobtasks.flaky.apply_async(("r", 100))  # keeps failing: 6 attempts, then failed
    procs.worker()
    final_runs(app, handle.id, 6)
    redis.set("r", 1000)  # the next call is number 1001: it succeeds
    result = procs.run("jobs", "requeue-failed", "--queue", "default")
    assert result.returncode == 0 and "Requeued 1 failed job(s)." in result.stdout
    rows = final_runs(app, handle.id, 7)
    assert rows[-1].status == "succeeded"


def test_time_from_enqueue_to_start_is_short(app, procs):
    procs.worker()
    with app.app_context():
        warm = jobtasks.add.delay(0, 0)  # the worker is starting: measure once it has run one job
    final_runs(app, warm.id, 1)
    with app.app_context():
        handle = jobtasks.add.delay(1, 2)
    [run] = final_runs(app, handle.id, 1)
    assert (run.started_at - run.enqueued_at).total_seconds() < 2.0  # milliseconds when the machine is idle
