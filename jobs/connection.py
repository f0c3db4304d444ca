"""RQ queues for the current app, on its Redis client (``itsm.extensions``)."""

from __future__ import annotations

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from itsm.extensions import redis_client, redis_shown
from jobs.exceptions import JobsUnavailableError, UnknownQueueError


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
    return JobsUnavailableError(f"Redis at {redis_shown()} is unreachable ({err.__class__.__name__}: {err})")


def ping() -> None:
    """Raise JobsUnavailableError unless Redis answers."""
    try:
        redis_client().ping()
    except RedisError as err:
        raise unavailable(err) from None
