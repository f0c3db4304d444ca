"""Unbound extension objects; ``create_app`` binds them to an app. Redis clients are made per app on first
use (never at import)."""

from __future__ import annotations

import socket
import time

from flask import Flask, current_app
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from sqlalchemy import MetaData

from itsm.config import RedisTarget, host_port, redis_target

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
# A worker's blocking dequeue has no socket timeout: TCP keepalive notices a master that vanished without
# closing its connections (a lost machine, before a failover) within about 25 s instead.
_KEEPALIVE = {getattr(socket, name): value for name, value in
              (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)) if hasattr(socket, name)}
WORKER_OPTIONS = {"socket_connect_timeout": 5, "health_check_interval": 30, "socket_keepalive": True,
                  "socket_keepalive_options": _KEEPALIVE}
# Asking a Sentinel is one short command: short timeouts for every kind of client, and no retries inside
# redis-py (its default would back off on each unreachable Sentinel in turn; the next one is asked instead).
SENTINEL_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1, "retry": Retry(NoBackoff(), 0)}


class Sentinels(Sentinel):
    """redis-py's Sentinel, with one clear line when no master can be had: no Sentinel answers, none
    knows the service, or the master is down (a failover under way)."""

    def __init__(self, target: RedisTarget) -> None:
        super().__init__(list(target.sentinels),
                         sentinel_kwargs={**SENTINEL_OPTIONS, "password": target.sentinel_password})
        self.target = target
        # Epoch seconds since which the master named last has been the master, as far as the Sentinel that
        # named it knows (it has watched since then): jobs from before may have run on the old one.
        self.master_since: dict[str, float] = {}

    def discover_master(self, service_name):
        unreachable, known = [], False
        for number, sentinel in enumerate(self.sentinels):
            try:
                masters = sentinel.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as err:
                unreachable.append(f"{_address(sentinel)}: {err}")
                continue
            state = masters.get(service_name)
            known = known or state is not None
            if state and self.check_master_state(state, service_name):
                self.sentinels[0], self.sentinels[number] = sentinel, self.sentinels[0]
                self.master_since[service_name] = time.time() - state.get("role-reported-time", 0) / 1000
                return state["ip"], state["port"]
        if len(unreachable) == len(self.sentinels):
            raise MasterNotFoundError(f"no Redis Sentinel answers ({'; '.join(unreachable)})")
        if not known:
            raise MasterNotFoundError(f"the Redis Sentinels at {self.target.sentinel_list()} know no master "
                                      f"named {service_name!r}")
        raise MasterNotFoundError(f"the Redis Sentinels see the master of {service_name!r} down (a failover "
                                  "may be under way)")


def _address(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return host_port(kwargs.get("host", "?"), kwargs.get("port", 0))


def make_redis(config, **options) -> Redis:
    """A client of the app's Redis: the node of a plain REDIS_URL, or (redis+sentinel) the master the
    Sentinels name, found again after a failover."""
    target = redis_target(config)
    if not target.is_sentinel:
        if target.password:
            options["password"] = target.password  # a password in the URL itself wins
        return Redis.from_url(target.url, **options)
    return Sentinels(target).master_for(target.service, db=target.db, password=target.password, **options)


def redis_shown(app: Flask | None = None) -> str:
    """The app's Redis for messages: its URL without the password."""
    return redis_target((app or current_app).config).display()


def redis_node(client: Redis) -> str:
    """host:port of the node this client talks to: for Sentinel, the master the Sentinels name now
    (raises a RedisError when they name none)."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return host_port(*pool.get_master_address())
    kwargs = pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return host_port(kwargs.get("host", "localhost"), kwargs.get("port", 6379))


def redis_master_since(client: Redis) -> float | None:
    """With Sentinel, since when (epoch seconds) the master this client uses has been the master; None for
    a plain URL, or before the client first asked."""
    pool = client.connection_pool
    manager = getattr(pool, "sentinel_manager", None)
    if not isinstance(manager, Sentinels):
        return None
    return manager.master_since.get(pool.service_name)


def redis_client(app: Flask | None = None, kind: str = "shared") -> Redis:
    """The app's client of ``kind`` for short commands, one per app and process."""
    app = app or current_app._get_current_object()
    key = "itsm_redis" if kind == "shared" else f"itsm_redis_{kind}"
    client = app.extensions.get(key)
    if client is None:
        client = app.extensions[key] = make_redis(app.config, **REDIS_OPTIONS[kind])
    return client


def worker_redis(app: Flask) -> Redis:
    """A new client for a worker or scheduler process: blocking dequeues need no socket timeout."""
    options = dict(WORKER_OPTIONS)
    if app.config["REDIS_URL"].startswith("unix:"):  # no TCP: no keepalive either
        del options["socket_keepalive"], options["socket_keepalive_options"]
    return make_redis(app.config, **options)
