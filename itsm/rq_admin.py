"""rq-dashboard at /admin/rq, for admins only, on the app's REDIS_URL (a node, or the master Sentinel names).

rq-dashboard has no authentication of its own and its buttons POST without a CSRF token, so
the app guards it: anonymous visitors go to /login, agents get 403, and a POST (requeue,
delete, empty) must come from this site (Origin or Referer on the same host) on top of the
SameSite session cookie. Scheduled entries live in rq-scheduler's registry, which
rq-dashboard does not show: /admin/schedules is where they are seen.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, abort, current_app, jsonify, redirect, request, url_for
from flask_login import current_user
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq_dashboard.web import setup_rq_connection

from itsm.config import redis_target
from itsm.extensions import csrf

PREFIX = "/admin/rq"
CHANGING_GETS = {"rq_dashboard.requeue_all"}  # rq-dashboard accepts GET for "requeue all"


def _same_origin() -> bool:
    source = request.headers.get("Origin") or request.headers.get("Referer")
    return bool(source) and urlsplit(source).netloc == request.host


def register(app: Flask) -> None:

    # rq-dashboard reads plain and redis+sentinel URLs alike (redis_sentinel_url), with the passwords apart.
    for name, value in redis_target(app.config).dashboard_settings().items():
        app.config.setdefault(name, value)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)
    csrf.exempt(rq_dashboard.blueprint)  # its JavaScript posts without tokens; _guard checks the origin
    with app.app_context():
        setup_rq_connection(app)

    @app.errorhandler(NoSuchJobError)
    def _no_such_job(err):  # rq-dashboard lets it through as a 500 (a job expired or was deleted meanwhile)
        return jsonify(status="error", message=f"There is no such job any more: {err}"), 404

    @app.before_request
    def _guard():
        if request.blueprint != "rq_dashboard":
            return None
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if not current_user.is_admin:
            abort(403, "Only admins can open the admin pages.")
        changes = request.method not in ("GET", "HEAD", "OPTIONS") or request.endpoint in CHANGING_GETS
        if changes and not _same_origin():
            abort(403, "Changes to the job queues must come from this site's own pages.")
        if (request.view_args or {}).get("instance_number", 0) != 0:
            abort(404, "There is one Redis: instance 0.")  # rq-dashboard would raise a LookupError (a 500)
        if request.endpoint == "rq_dashboard.compact_queue" and not _queue_exists(request.view_args["queue_name"]):
            return jsonify(status="OK")  # nothing to compact; rq's RENAME would fail with "no such key" (a 500)
        return None


def _queue_exists(name: str) -> bool:
    connection = current_app.redis_conn  # rq-dashboard's own connection (RQ_DASHBOARD_REDIS_URL)
    return bool(connection.exists(Queue(name, connection=connection).key))
