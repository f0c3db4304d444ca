"""/healthz and /readyz against real Redis, PostgreSQL/SQLite and real worker and scheduler processes."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.schedules.models import PeriodicTask
from tests.conftest import DEAD_REDIS
from tests.processes import wait_for


def ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.get_json()


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_follows_the_scheduler_workers_and_schedules(app, client, procs, redis, runner):
    status, body = ready(client)
    assert status == 503 and not body["checks"]["scheduler"]["ok"]
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert body["checks"]["workers"]["ok"]  # nothing waits, so no worker is needed yet
    for check in body["checks"].values():
        assert check["latency_ms"] >= 0
    scheduler = procs.start("scheduler")
    procs.worker()
    status, body = wait_for(lambda: (r := ready(client))[0] == 200 and r[1]["checks"]["workers"]["alive"] and r,
                            timeout=30, message="/readyz 200 with a live worker")
    assert body["status"] == "ok"
    assert body["checks"]["scheduler"]["heartbeat_age_s"] < 60
    # A schedule that has not run for far too long makes the app not ready.
    assert runner.invoke(args=["schedules", "sync"]).exit_code == 0
    with app.app_context():
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=utcnow()))
        db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.name == "purge-job-runs")
                           .values(last_run_at=utcnow() - timedelta(days=5)))
        db.session.commit()
    status, body = ready(client)
    assert status == 503 and body["checks"]["schedules"]["late"] == ["purge-job-runs"]
    with app.app_context():
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=utcnow()))
        db.session.commit()
    # The scheduler stops: not ready.
    procs.kill(scheduler, signal.SIGTERM)
    status, body = ready(client)
    assert status == 503 and not body["checks"]["scheduler"]["ok"]


def test_work_waiting_without_a_live_worker_fails(app, client, redis):
    from tests.jobtasks import add

    with app.app_context():
        add.delay(1, 2)
    redis.set("itsm:scheduler:heartbeat", str(__import__("time").time()), ex=60)
    status, body = ready(client)
    assert status == 503 and body["checks"]["workers"] == {**body["checks"]["workers"], "ok": False, "queued": 1}
    assert body["checks"]["scheduler"]["ok"]


@pytest.fixture
def app_config(request):
    if "redis_down" in request.node.name:
        return {"REDIS_URL": DEAD_REDIS}
    if "token" in request.node.name:
        return {"READYZ_TOKEN": "s3cret-probe-token"}
    return {}


def test_readyz_with_redis_down_answers_fast_with_503(client):
    status, body = ready(client)
    assert status == 503 and not body["checks"]["redis"]["ok"] and "error" in body["checks"]["redis"]
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["workers"]["error"] == "Redis is unreachable"


def test_readyz_token_guards_the_details(client):
    status, body = ready(client)
    assert status == 503 and set(body) == {"status", "failed"}
    assert "checks" in client.get("/readyz?token=s3cret-probe-token").get_json()
    assert "checks" in client.get("/readyz", headers={"Authorization": "Bearer s3cret-probe-token"}).get_json()
    assert "checks" not in client.get("/readyz?token=wrong").get_json()
