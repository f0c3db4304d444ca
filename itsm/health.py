"""Liveness (/healthz: the process serves) and readiness (/readyz: everything the product needs answers).

/readyz runs each check with its latency and answers 503 when any fails, so a load balancer or an
orchestrator can act on it. Anyone gets the status and the HTTP code; the checks (database kind,
worker counts, schedule names, error texts) only an admin's session or, with READYZ_TOKEN set, a
caller presenting it (``?token=`` or an ``Authorization: Bearer`` header).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from redis import Redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from itsm import maintenance
from itsm.config import redis_target
from itsm.dbtypes import utcnow
from itsm.extensions import db, redis_client, redis_node
from itsm.schedules.describe import troubles
from jobs import liveness

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _timed(check: Callable[[], tuple[bool, dict]]) -> dict:
    start = time.perf_counter()
    try:
        ok, detail = check()
    except Exception as err:  # a check that cannot run has failed; say why, never 500
        ok, detail = False, {"error": f"{type(err).__name__}: {err}"[:300]}
    return {"ok": ok, "latency_ms": round((time.perf_counter() - start) * 1000, 2), **detail}


def _redis() -> Redis:
    # The short timeouts: a readiness probe must answer within the prober's deadline.
    return redis_client(kind="probe")


def redis_where(connection: Redis) -> dict:
    """Which node answers: the master the Sentinels name now (with the service), or a plain URL's node."""
    target = redis_target(current_app.config)
    where = {"node": redis_node(connection)}
    if target.is_sentinel:
        where.update(role="master", service=target.service, sentinels=target.sentinel_list())
    return where


def _database() -> tuple[bool, dict]:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
    return True, {"dialect": db.engine.dialect.name}


def _late_schedules() -> tuple[bool, dict]:
    found = troubles(utcnow())
    late, invalid = [t.name for t in found.late], [t.name for t, _ in found.invalid]
    db.session.rollback()
    return not late and not invalid, {"late": late, "invalid": invalid}


def checks() -> dict[str, dict]:
    connection = _redis()
    results = {"database": _timed(_database)}

    def redis_check():
        connection.ping()
        return True, redis_where(connection)

    results["redis"] = _timed(redis_check)
    if results["redis"]["ok"]:
        def scheduler():
            age = liveness.scheduler_age(connection)
            names = [s.name for s in liveness.schedulers(connection) if s.alive]  # "itsm.<host>.<pid>"
            return liveness.scheduler_alive(age), {"heartbeat_age_s": None if age is None else round(age, 1),
                                                   "names": names}

        def workers():
            found = liveness.workers(connection)
            alive = [w for w in found if w.alive or w.busy]
            waiting = sum(q.queued for q in liveness.queues(connection))
            # No live worker is fine only while nothing waits for one.
            return bool(alive) or waiting == 0, {"alive": len(alive), "registered": len(found), "queued": waiting,
                                                 "names": [w.name for w in alive]}  # "<host>.<pid>.<slot>"

        results["scheduler"] = _timed(scheduler)
        results["workers"] = _timed(workers)
    else:
        skipped = {"ok": False, "latency_ms": 0.0, "error": "Redis is unreachable"}
        results["scheduler"], results["workers"] = dict(skipped), dict(skipped)
    results["maintenance"] = _timed(_maintenance)
    if results["maintenance"].get("on"):  # the scheduler pauses on purpose; a restore may hold the tables
        results["schedules"] = {"ok": True, "latency_ms": 0.0, "skipped": "maintenance mode is on"}
    else:
        results["schedules"] = _timed(_late_schedules) if results["database"]["ok"] else \
            {"ok": False, "latency_ms": 0.0, "error": "the database is unreachable"}
    connection.close()
    return results


def _maintenance() -> tuple[bool, dict]:
    """Maintenance mode is reported, never a failure: the web then answers 503 by design."""
    state = maintenance.current()
    return True, {"on": state.on, "since": state.since.isoformat() if state.on and state.since else None}


def _may_see_details() -> bool:
    token = current_app.config.get("READYZ_TOKEN")
    if token:
        given = request.args.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return True
    try:
        return current_user.is_authenticated and current_user.is_admin
    except SQLAlchemyError:  # the session cannot be checked without the database: no details
        db.session.rollback()
        return False


@bp.get("/readyz")
def readyz():
    results = checks()
    ready = all(r["ok"] for r in results.values())
    body = {"status": "ok" if ready else "fail"}
    if _may_see_details():
        body["checks"] = results
    return jsonify(body), 200 if ready else 503
