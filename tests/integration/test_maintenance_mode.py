"""Maintenance mode: the flag (Redis and the database), the web's 503, workers and the scheduler pausing,
the in-flight count, ``flask maintenance`` and the restore's maintenance window."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from rq import Queue, Worker

from itsm import maintenance
from itsm.backups import service
from itsm.backups.store import list_backups
from itsm.extensions import db
from itsm.maintenance import MaintenanceError, MaintenanceState, inflight
from itsm.schedules import service as schedules
from itsm.schedules.models import ScheduleFiring
from itsm.schedules.validation import Definition
from tests import factories, jobtasks
from tests.conftest import DEAD_REDIS, TEST_REDIS_URL
from tests.processes import ROOT, process_env, wait_for


def durable(app) -> MaintenanceState | None:
    with app.app_context():
        row = db.session.get(MaintenanceState, 1)
        db.session.expunge_all()
        return row


def test_cli_on_status_off(app, runner, redis):
    off = runner.invoke(args=["maintenance", "status"])
    assert off.exit_code == 0 and "Maintenance mode is off" in off.output and "0 requests, 0 jobs" in off.output
    on = runner.invoke(args=["maintenance", "on", "--message", "Upgrading the database", "--retry-after", "300"])
    assert on.exit_code == 0, on.output
    status = runner.invoke(args=["maintenance", "status"])
    assert status.exit_code == 0 and "Maintenance mode is ON since" in status.output
    assert "by flask maintenance on (" in status.output and "Upgrading the database" in status.output
    assert "Retry-After: 300 s" in status.output and "In flight: 0 requests, 0 jobs." in status.output
    row = durable(app)
    assert row.active and row.message == "Upgrading the database" and row.retry_after == 300
    assert b'"on": true' in redis.get(maintenance.KEY)
    lifted = runner.invoke(args=["maintenance", "off"])
    assert lifted.exit_code == 0 and "it was on since" in lifted.output
    assert not durable(app).active and not maintenance.current(app).on
    bad = runner.invoke(args=["maintenance", "on", "--retry-after", "0"])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("app_config", [{"REDIS_URL": DEAD_REDIS}])
def test_without_redis_maintenance_cannot_be_turned_on_and_a_restore_does_not_start(app, runner):
    with app.app_context():
        factories.make_ticket("kept")
        backup = service.create_backup()
    refused = runner.invoke(args=["maintenance", "on"])
    assert refused.exit_code == 1 and "Redis at redis://127.0.0.1:1/0 is unreachable" in refused.stderr
    assert durable(app) is None or not durable(app).active  # nothing changed
    with app.app_context():
        factories.make_ticket("after the backup")
    restore = runner.invoke(args=["backup", "restore", backup.name, "--yes"])
    assert restore.exit_code == 1 and "cannot turn maintenance mode on" in restore.stderr
    assert restore.stderr.strip().splitlines()[-1].startswith("Error: ")
    with app.app_context():
        assert len(list_backups()) == 1  # no safety backup, no restore
        assert "after the backup" in set(db.session.scalars(sa.text("SELECT title FROM tickets")))


def test_the_web_answers_503_except_health_and_static(app, client, auth, redis):
    auth.login()
    assert client.get("/board").status_code == 200
    with app.app_context():
        maintenance.switch_on("a test", "Back at noon", retry_after=90)
    page = client.get("/board")
    assert page.status_code == 503 and page.headers["Retry-After"] == "90"
    assert "itsm is in maintenance" in page.get_data(as_text=True) and "Back at noon" in page.get_data(as_text=True)
    api = client.get("/tickets", headers={"Accept": "application/json"})
    assert api.status_code == 503 and api.json["error"] == "maintenance" and api.json["retry_after"] == 90
    posted = auth.post("/tickets/new", {"title": "during maintenance"})
    assert posted.status_code == 503
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.json["checks"]["maintenance"]["on"] is True and ready.json["checks"]["maintenance"]["ok"]
    assert ready.json["checks"]["schedules"]["skipped"] == "maintenance mode is on"
    static = client.get("/static/style.css")
    assert static.status_code == 200
    static.close()
    with app.app_context():
        maintenance.switch_off("a test")
        assert db.session.scalar(sa.text("SELECT count(*) FROM tickets WHERE title = 'during maintenance'")) == 0
    assert client.get("/board").status_code == 200
    assert client.get("/readyz").json["checks"]["maintenance"]["on"] is False


def test_the_database_wins_when_redis_lost_the_flag(app, client, redis):
    with app.app_context():
        maintenance.switch_on("a test")
    redis.flushdb()  # a Redis restart without persistence
    assert client.get("/login").status_code == 503
    assert maintenance.State.decode(redis.get(maintenance.KEY)).on  # put back from the durable copy
    with app.app_context():
        maintenance.switch_off("a test")
    redis.flushdb()
    assert client.get("/login").status_code == 200


@pytest.mark.parametrize("app_config", [{"REDIS_URL": DEAD_REDIS}])
def test_a_web_process_without_redis_reads_the_database(app, client):
    with app.app_context():
        maintenance._write_database(maintenance.State(on=True, since=maintenance.utcnow(), by="a test"))
    assert client.get("/login").status_code == 503
    with app.app_context():
        maintenance._write_database(maintenance.State(on=False, since=maintenance.utcnow(), by="a test"))
    time.sleep(maintenance.REDIS_RETRY_SECONDS)
    assert client.get("/login").status_code == 200


def test_an_admin_page_under_way_when_maintenance_began_shows_a_banner(app, ids, redis):
    from flask import g, render_template

    from itsm.auth.sessions import log_in
    from itsm.users.models import User

    with app.test_request_context("/board"):
        log_in(db.session.get(User, ids.admin))
        g.itsm_inflight = "a request that began before"
        maintenance.switch_on("flask backup restore x")
        page = render_template("errors/error.html", code=404, title="t", message="m")
        maintenance.switch_off("a test")
    assert "Maintenance mode is on since" in page and "flask backup restore x" in page


KILLED_WEB = """
import sys, time
from itsm import create_app
from itsm.maintenance import inflight
inflight.TTL_SECONDS, inflight.RENEW_SECONDS = 2, 0.5
app = create_app()
with app.app_context():
    inflight.tracker(app, "web").begin("r1", "POST /tickets/new")
print("begun", flush=True)
time.sleep(120)
"""


def test_in_flight_entries_live_while_their_process_does_and_expire_when_it_is_killed(app, redis, database_url):
    """A request longer than the entries' TTL stays counted (its process renews it); SIGKILL the process and
    its entry no longer counts once the TTL has passed (shortened to 2 s here, 15 s in production)."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WEB], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=process_env(database_url, TEST_REDIS_URL))
    try:
        assert proc.stdout.readline().strip() == "begun"
        assert inflight.in_flight(redis).count("web") == 1
        time.sleep(3)  # past the TTL: still counted, since its process is alive
        assert inflight.in_flight(redis).describe().startswith("1 request, 0 jobs (POST /tickets/new on ")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: inflight.in_flight(redis).total == 0, timeout=5, message="the dead process's entry")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_job_queued_during_maintenance_runs_after_it_is_lifted_not_before(app, procs, redis):
    """The worker is blocked waiting on its queues when maintenance begins: it pops the job, sees the flag
    and gives the job back; it keeps its heartbeat meanwhile and runs the job once maintenance is lifted."""
    paused_job_waits_for_the_end_of_maintenance(app, procs, redis)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_on_a_single_queue_gives_the_job_back_too(app, procs, redis):
    """RQ moves a job popped from a single queue into its intermediate list: it must leave that list too."""
    paused_job_waits_for_the_end_of_maintenance(app, procs, redis, "--queues", "default")


def paused_job_waits_for_the_end_of_maintenance(app, procs, redis, *worker_args: str) -> None:
    # A 5 s heartbeat makes RQ block 15 s on the queues, so the job arrives while the worker is blocked.
    procs.worker(*worker_args, JOBS_HEARTBEAT_SECONDS="5")
    # Idle: past the maintenance check, waiting on its queues.
    wait_for(lambda: [w for w in Worker.all(connection=redis) if w.get_state() == "idle"], timeout=60,
             message="the worker waiting on its queues")
    with app.app_context():
        maintenance.switch_on("a test")
        handle = jobtasks.slow.delay("paused", 0)
    time.sleep(3)  # the worker had every chance to run it
    assert redis.get("paused:started") is None
    assert handle.id in Queue("default", connection=redis).job_ids  # waiting in Redis, nothing lost
    assert redis.llen("rq:queue:default:intermediate") == 0  # and only there
    assert f"job {handle.id} went back to the head of queue default" in procs.logs()
    [worker] = Worker.all(connection=redis)
    assert worker.get_state() == "suspended" and (maintenance.utcnow() - worker.last_heartbeat).total_seconds() < 5
    with app.app_context():
        maintenance.switch_off("a test")
    wait_for(lambda: redis.get("paused:completed"), timeout=20, message="the job, after maintenance")
    assert int(redis.get("paused:started")) == 1


def test_a_running_job_is_waited_for_and_a_restore_that_cannot_wait_is_abandoned(app, procs, redis, runner):
    procs.worker()
    with app.app_context():
        factories.make_ticket("kept")
        backup = service.create_backup()
        jobtasks.gated.delay("busy")
    wait_for(lambda: redis.get("busy:started"), timeout=60, message="the gated job to start")
    restore = runner.invoke(args=["backup", "restore", backup.name, "--yes", "--wait", "2"])
    assert restore.exit_code == 1
    last = restore.stderr.strip().splitlines()[-1]
    assert "1 job (t.gated on " in last and "still running after 2 s; nothing was changed" in last
    assert last.endswith("maintenance mode was lifted")
    with app.app_context():
        assert not maintenance.current(app).on and len(list_backups()) == 1  # no safety backup: nothing happened
    kept = runner.invoke(args=["backup", "restore", backup.name, "--yes", "--wait", "1", "--on-timeout", "keep"])
    assert kept.exit_code == 1 and "stays on (--on-timeout keep)" in kept.stderr
    assert maintenance.current(app).on
    waiting = runner.invoke(args=["maintenance", "on", "--wait", "1"])
    assert waiting.exit_code == 1 and "1 job" in waiting.stderr and "still running" in waiting.stderr
    redis.set("busy:go", 1)
    wait_for(lambda: inflight.in_flight(redis).total == 0, timeout=20, message="the job to finish")
    restored = runner.invoke(args=["backup", "restore", backup.name, "--yes", "--wait", "5"])
    assert restored.exit_code == 0, restored.output
    assert "maintenance mode stays on, as it was before" in restored.stdout and maintenance.current(app).on
    assert runner.invoke(args=["maintenance", "off"]).exit_code == 0


def test_the_scheduler_enqueues_no_tick_during_maintenance(app, procs, redis):
    d = Definition(name="every second", task="t.count", kind="interval", every=1, period="seconds",
                   args=["ticks"], misfire_policy="skip")
    with app.app_context():
        task_id = schedules.save(d).id
        db.session.commit()
    procs.start("scheduler")
    procs.worker()
    wait_for(lambda: redis.llen("ticks") >= 2, timeout=60, message="ticks before maintenance")
    with app.app_context():
        maintenance.switch_on("a test")
    wait_for(lambda: inflight.in_flight(redis).total == 0, timeout=10, message="the last tick's job")
    time.sleep(1.5)  # a pass that began before the flag may still have enqueued a tick: it waits in its queue
    seen = redis.llen("ticks"), count_firings(app, task_id), queued(redis)
    time.sleep(4)  # four ticks fall due while maintenance is on
    assert (redis.llen("ticks"), count_firings(app, task_id), queued(redis)) == seen  # none enqueued, none ran
    ran = seen[0]
    assert redis.exists("itsm:scheduler:heartbeat")  # paused, not dead
    with app.app_context():
        maintenance.switch_off("a test")
    wait_for(lambda: redis.llen("ticks") >= ran + 2, timeout=20, message="ticks after maintenance")


def queued(redis) -> int:
    return sum(Queue(q, connection=redis).count for q in ("high", "default", "low"))


def count_firings(app, task_id: int) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(ScheduleFiring)
                                 .where(ScheduleFiring.periodic_task_id == task_id))


def test_switching_on_without_redis_changes_nothing(app):
    app.config["REDIS_URL"] = DEAD_REDIS
    app.extensions.pop("itsm_maintenance_redis", None)
    with app.app_context(), pytest.raises(MaintenanceError, match="nothing was changed"):
        maintenance.switch_on("a test")
    row = durable(app)
    assert row is None or not row.active
