"""Redis clients and RQ queues for the current app, created on first use (never at import)."""

from __future__ import annotations

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from jobs.exceptions import JobsUnavailableError, UnknownQueueError


def redis_client(app: Flask | None = None) -> Redis:
    """The app's shared client for short commands; timeouts keep a web request from hanging."""
    app = app or current_app._get_current_object()
    client = app.extensions.get("itsm_redis")
    if client is None:
        client = Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30)
        app.extensions["itsm_redis"] = client
    return client


def worker_redis(app: Flask) -> Redis:
    """A client for a worker process: blocking dequeues need no socket timeout."""
    return Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=5, health_check_interval=30)


def queue_names(app: Flask | None = None) -> tuple[str, ...]:
    app = app or current_app
    return tuple(app.config["JOBS_QUEUES"])


def check_queue(name: str) -> str:
    if name not in queue_names():
        raise UnknownQueueError(f"unknown queue {name!r} (queues: {', '.join(queue_names())})")
    return name


def get_queue(name: str, connection: Redis | None = None) -> Queue:
    return Queue(check_queue(name), connection=connection or redis_client())


def unavailable(err: RedisError) -> JobsUnavailableError:
    url = current_app.config["REDIS_URL"]
    return JobsUnavailableError(f"Redis at {url} is unreachable ({err.__class__.__name__}: {err})")


def ping() -> None:
    """Raise JobsUnavailableError unless Redis answers."""
    try:
        redis_client().ping()
    except RedisError as err:
        raise unavailable(err) from None
