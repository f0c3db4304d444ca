"""``flask jobs ...`` and ``flask worker`` bad input: one line on stderr, non-zero exit, nothing enqueued."""

from __future__ import annotations

import pytest
from rq import Queue

from itsm.extensions import db
from jobs.models import JobRun
from tests.conftest import DEAD_REDIS
from tests.processes import wait_for

pytestmark = pytest.mark.usefixtures("redis")


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "enqueue", "no.such.task"], "unknown task 'no.such.task'"),
        (["jobs", "enqueue", "t.add", "--args", "[1, 2]", "--queue", "urgent"], "unknown queue(s) 'urgent'"),
        (["jobs", "enqueue", "t.add", "--args", "[1, 2]", "--countdown", "-5"], "-5.0 is not in the range 0<=x<="),
        (["jobs", "enqueue", "diagnostics.ping", "--countdown", "1e300"], "1e+300 is not in the range 0<=x<="),
        (["jobs", "enqueue", "diagnostics.ping", "--countdown", "nan"], "'nan' is not a number in the range"),
        (["jobs", "enqueue", "diagnostics.ping", "--eta", "9999-12-31T23:59:59-14:00"], "at most 10 years"),
        (["jobs", "enqueue", "diagnostics.ping", "--eta", "2999-01-01T00:00:00+00:00"], "at most 10 years"),
        (["worker", "--burst", "--max-jobs", "99999999999999999999"], "is not in the range 1<=x<="),
        (["jobs", "enqueue", "t.add", "--args", "{not json"], "Expecting property name"),
        (["jobs", "enqueue", "t.add", "--args", '{"a": 1}'], "--args must be a JSON list"),
        (["jobs", "enqueue", "t.add", "--eta", "tomorrow"], "Invalid isoformat"),
        (["jobs", "requeue-failed", "--queue", "nope"], "unknown queue(s) 'nope'"),
        (["worker", "--queues", "high,nope"], "unknown queue(s) 'nope'"),
        (["worker", "--concurrency", "0"], "0 is not in the range"),
    ],
)
def test_bad_cli_input(procs, redis, args, message):
    result = procs.run(*args)
    assert message in error_line(result)
    assert redis.keys("rq:job:*") == []


@pytest.mark.parametrize("args", [["jobs", "enqueue", "t.add", "--args", "[1, 2]"], ["jobs", "status"],
                                  ["jobs", "ping"], ["jobs", "requeue-failed"], ["worker", "--burst"]])
def test_redis_unreachable_is_one_clear_line(procs, args):
    result = procs.run(*args, REDIS_URL=DEAD_REDIS, timeout=30)
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in error_line(result)


def test_enqueue_now_and_past_eta_run_now(app, procs, redis):
    now = procs.run("jobs", "enqueue", "t.add", "--args", "[1, 2]")
    assert now.returncode == 0 and "Enqueued t.add as" in now.stdout
    past = procs.run("jobs", "enqueue", "t.add", "--args", "[3, 4]", "--eta", "2020-01-01T00:00:00+00:00")
    assert past.returncode == 0 and " for " not in past.stdout  # not scheduled: queued now
    assert Queue("default", connection=redis).count == 2
    later = procs.run("jobs", "enqueue", "t.add", "--args", "[5, 6]", "--countdown", "3600")
    assert later.returncode == 0 and " for " in later.stdout
    status = procs.run("jobs", "status")
    assert status.returncode == 0
    default_line = next(line for line in status.stdout.splitlines() if line.startswith("default"))
    assert default_line.split()[1:] == ["2", "0", "1", "0"]
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(JobRun)
                                 .where(JobRun.status == "queued")) == 3


def test_ping_reports_live_workers(procs):
    assert procs.run("jobs", "ping").returncode == 1  # nothing alive yet
    procs.worker()
    result = wait_for(lambda: (r := procs.run("jobs", "ping")) and "worker" in r.stdout and r,
                      message="a worker in jobs ping")
    assert "heartbeat" in result.stdout
    assert "no live scheduler" in result.stderr and result.returncode == 1  # the scheduler is not running


def test_purge_asks_first(procs, redis):
    procs.run("jobs", "enqueue", "t.add", "--args", "[1, 2]")
    refused = procs.run("worker", "--purge", "--burst", "--queues", "default")
    assert refused.returncode != 0 and Queue("default", connection=redis).count == 1
    proc = procs.start("worker", "--purge", "--burst", "--queues", "default")
    proc.wait(timeout=30)
    assert Queue("default", connection=redis).count == 1  # no terminal: no confirmation, nothing purged


def test_purged_jobs_are_closed_in_the_audit_and_never_recovered(app, procs, redis):
    """Jobs deleted on purpose are not "lost with Redis": their queued rows say purged, so the lost-job pass
    of the worker that purged them does not enqueue them again."""
    import subprocess
    import sys

    from tests.processes import ROOT, process_env

    procs.run("jobs", "enqueue", "t.add", "--args", "[1, 2]")
    purge = subprocess.run([sys.executable, "-m", "flask", "worker", "--purge", "--burst", "--queues", "default"],
                           cwd=ROOT, env=process_env(procs.database_url, procs.redis_url, JOBS_LOST_GRACE_SECONDS="1"),
                           input="y\n", capture_output=True, text=True, timeout=60)
    assert purge.returncode == 0, purge.stderr
    assert "Purged 1 job(s)." in purge.stderr
    with app.app_context():
        [run] = db.session.scalars(db.select(JobRun)).all()
        assert (run.status, run.error_type, run.requeued_at) == ("lost", "Purged", None)
    assert Queue("default", connection=redis).count == 0
