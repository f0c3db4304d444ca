"""/healthz and /readyz against real Redis, PostgreSQL/SQLite and real worker and scheduler processes."""

from __future__ import annotations

import signal
import socket
from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm import create_app
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.schedules.models import PeriodicTask
from tests.conftest import DEAD_REDIS, base_config
from tests.processes import wait_for


def ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.get_json()


@pytest.fixture
def admin(client, auth):
    """The checks' details are for admins (or READYZ_TOKEN holders): the tests below read them as one."""
    auth.login()
    return client


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_follows_the_scheduler_workers_and_schedules(app, admin, procs, redis, runner):
    client = admin
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
    # Each by name, with its machine: where it runs is what several machines need to know.
    assert body["checks"]["scheduler"]["names"] == [f"itsm.{socket.gethostname()}.{scheduler.pid}"]
    names = body["checks"]["workers"]["names"]
    assert len(names) == 1 and names[0].startswith(f"{socket.gethostname()}."), names
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


def test_work_waiting_without_a_live_worker_fails(app, admin, redis):
    client = admin
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


def test_readyz_with_redis_down_answers_fast_with_503(admin):
    status, body = ready(admin)
    assert status == 503 and not body["checks"]["redis"]["ok"] and "error" in body["checks"]["redis"]
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["workers"]["error"] == "Redis is unreachable"


def test_anonymous_callers_get_the_status_alone_with_redis_down(client, auth):
    """No READYZ_TOKEN: a probe gets the status and the HTTP code; the database kind, worker counts,
    schedule names and raw error texts are for admins."""
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json() == {"status": "fail"}
    raw = response.get_data(as_text=True)
    for secret in ("sqlite", "postgresql", "Redis", "Error", "127.0.0.1", "latency"):
        assert secret not in raw, secret
    auth.login_agent()
    assert ready(client) == (503, {"status": "fail"})  # an agent is not an admin
    auth.logout()
    auth.login()
    status, body = ready(client)
    assert status == 503 and body["checks"]["database"]["dialect"] in ("sqlite", "postgresql")
    assert "Connection refused" in body["checks"]["redis"]["error"]


def test_readyz_token_guards_the_details(client, auth):
    status, body = ready(client)
    assert status == 503 and body == {"status": "fail"}
    assert "checks" in client.get("/readyz?token=s3cret-probe-token").get_json()
    assert "checks" in client.get("/readyz", headers={"Authorization": "Bearer s3cret-probe-token"}).get_json()
    assert client.get("/readyz?token=wrong").get_json() == {"status": "fail"}
    assert client.get("/readyz", headers={"Authorization": "Bearer "}).get_json() == {"status": "fail"}
    auth.login()  # an admin's session also shows them
    assert "checks" in client.get("/readyz").get_json()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_readyz_with_a_session_cookie_while_the_database_is_down(client, auth):
    """An admin's cookie must not turn the probes into a 500 when the database is gone: /healthz
    still answers 200 and /readyz 503 (the session cannot be checked, so no details)."""
    auth.login()
    cookie = client.get_cookie("session").value
    gone = create_app(base_config("postgresql+psycopg://postgres@127.0.0.1:1/gone"))  # nothing listens on 1
    try:
        probe = gone.test_client()
        probe.set_cookie("session", cookie)
        assert probe.get("/healthz").status_code == 200
        response = probe.get("/readyz")
        assert response.status_code == 503 and response.get_json() == {"status": "fail"}
    finally:
        with gone.app_context():
            db.engine.dispose()
