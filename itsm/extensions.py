"""Unbound extension objects; ``create_app`` binds them to an app. Redis clients are made per app on first
use (never at import)."""

from __future__ import annotations

from flask import Flask, current_app
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis import Redis
from sqlalchemy import MetaData

# Stable constraint names so migrations (and SQLite batch mode) can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate(render_as_batch=True, compare_type=True)
mail = Mail()
login_manager = LoginManager()
csrf = CSRFProtect()

# Timeouts per use: a web request must not hang on Redis, a readiness probe or the maintenance flag must
# answer within a prober's deadline, a worker's blocking dequeue has no socket timeout at all.
REDIS_OPTIONS = {
    "shared": {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 30},
    "probe": {"socket_connect_timeout": 1, "socket_timeout": 2},
}


def redis_client(app: Flask | None = None, kind: str = "shared") -> Redis:
    """The app's client of ``kind`` for short commands, one per app and process."""
    app = app or current_app._get_current_object()
    key = "itsm_redis" if kind == "shared" else f"itsm_redis_{kind}"
    client = app.extensions.get(key)
    if client is None:
        client = app.extensions[key] = Redis.from_url(app.config["REDIS_URL"], **REDIS_OPTIONS[kind])
    return client


def worker_redis(app: Flask) -> Redis:
    """A new client for a worker or scheduler process: blocking dequeues need no socket timeout."""
    return Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=5, health_check_interval=30)
