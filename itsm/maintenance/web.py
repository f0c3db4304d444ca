"""The web side of maintenance mode: a 503 for every request but the health endpoints and static files,
each other request counted in flight while it runs, and a banner for admins on a page that was already
under way when maintenance began."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, g, render_template, request
from flask_login import current_user
from redis.exceptions import RedisError

from itsm import maintenance
from itsm.maintenance import State, inflight

log = logging.getLogger(__name__)
EXEMPT_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "static"})


def wants_json() -> bool:
    return (request.path.startswith("/api/") or request.path.endswith(".json") or request.is_json
            or request.accept_mimetypes.best == "application/json")


def refusal(state: State):
    """The 503 every refused request gets: JSON for JSON clients, otherwise the maintenance page (which
    reads nothing from the database: it may be mid-restore)."""
    headers = {"Retry-After": str(state.retry_after), "Cache-Control": "no-store"}
    if wants_json():
        body = {"error": "maintenance", "message": state.message or "itsm is in maintenance; try again later.",
                "since": state.since.isoformat() if state.since else None, "retry_after": state.retry_after}
        return body, 503, headers
    return render_template("errors/maintenance.html", state=state), 503, headers


def _state_at_start(app: Flask) -> State:
    """Count this request in flight and read the flag (one round trip); without Redis, read the database
    (the request is then not counted: nothing can be restored while Redis is away)."""
    if maintenance.redis_usable(app):
        item = uuid.uuid4().hex
        try:
            state = inflight.tracker(app, "web").begin(item, f"{request.method} {request.path}"[:200])
        except RedisError as err:
            maintenance.redis_failed(app, err)
        else:
            if not state.on:
                g.itsm_inflight = item
            return state
    return maintenance.from_database(app)


def register(app: Flask) -> None:
    def refuse_during_maintenance():
        if request.endpoint in EXEMPT_ENDPOINTS:
            return None
        try:
            state = _state_at_start(app)
        except Exception as err:  # noqa: BLE001 -- neither Redis nor the database answers: the view will say so
            log.warning("maintenance flag unreadable, serving the request: %s", err)
            return None
        return refusal(state) if state.on else None

    # First of all hooks: a refused request must not touch the session's CSRF check or the database.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_during_maintenance)

    @app.teardown_request
    def end_in_flight(exc):
        item = g.pop("itsm_inflight", None)
        if item is not None:
            inflight.tracker(app, "web").end(item)

    @app.context_processor
    def maintenance_banner():
        # Only on an admin's page that began before maintenance did (any later request gets the 503).
        if "itsm_inflight" not in g or not (current_user.is_authenticated and current_user.is_admin):
            return {}
        try:
            state = maintenance.current(app)
        except Exception:  # noqa: BLE001 -- a banner must never break a page
            return {}
        return {"maintenance_banner": state} if state.on else {}
