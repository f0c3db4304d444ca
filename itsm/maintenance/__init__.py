"""Maintenance mode: one flag every web, worker and scheduler process obeys at once.

While it is on the web answers 503 (health endpoints and static files excepted), workers take no job
and the scheduler enqueues no tick; ``flask backup restore`` turns it on around a restore.

The flag lives in Redis, read on every request (one GET), and in the database, its durable copy. Every
change is written to the database first, then to Redis, so Redis is never older than the database and
wins while it has the key. A Redis that lost its data (FLUSHDB, a restart without persistence) has no key:
the reader takes the database's word and puts it back (``SET NX``, so a change made meanwhile wins). A
process that cannot reach Redis reads the database. Turning it on needs Redis: without it the in-flight
work cannot be counted, and a restore must not run while it cannot tell that writes have stopped.

Core module: imports only the extensions and column types (the job runtime uses it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError

from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db, redis_client, redis_shown

log = logging.getLogger(__name__)
KEY = "itsm:maintenance"
DEFAULT_RETRY_AFTER = 120  # seconds, in the 503's Retry-After unless the operator says otherwise
REDIS_RETRY_SECONDS = 1.0  # after a Redis error, read the database for this long before trying Redis again


class MaintenanceError(Exception):
    """Maintenance mode cannot be switched or waited for; the message is for the operator."""


class MaintenanceState(db.Model):
    """The durable copy of the flag: one row (id 1); no row is off."""

    __tablename__ = "maintenance_state"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id = db.Column(db.Integer, primary_key=True)
    active = db.Column(db.Boolean, nullable=False, default=False)
    changed_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    changed_by = db.Column(db.String(200), nullable=False)
    message = db.Column(db.String(500), nullable=True)
    retry_after = db.Column(db.Integer, nullable=False, default=DEFAULT_RETRY_AFTER)


@dataclass(frozen=True)
class State:
    on: bool
    since: datetime | None = None  # when it was last switched (on, or off)
    by: str | None = None  # who or what switched it
    message: str | None = None
    retry_after: int = DEFAULT_RETRY_AFTER
    source: str = "redis"  # where this reading came from: "redis" or "database"

    def encode(self) -> str:
        data = asdict(self)
        data.pop("source")
        data["since"] = self.since.isoformat() if self.since else None
        return json.dumps(data)

    @classmethod
    def decode(cls, raw: bytes | str, source: str = "redis") -> State:
        data = json.loads(raw)
        since = datetime.fromisoformat(data["since"]) if data.get("since") else None
        return cls(on=bool(data.get("on")), since=since, by=data.get("by"), message=data.get("message"),
                   retry_after=int(data.get("retry_after") or DEFAULT_RETRY_AFTER), source=source)


OFF = State(on=False, source="database")


def redis_for(app: Flask) -> Redis:
    """This process's client for the flag: short timeouts, a request must never hang on it."""
    return redis_client(app, kind="probe")


def _app(app: Flask | None) -> Flask:
    return app or current_app._get_current_object()


def redis_usable(app: Flask) -> bool:
    """False for a moment after this process saw Redis fail, so requests do not each wait on a dead one."""
    return time.monotonic() >= app.extensions.get("itsm_maintenance_redis_down_until", 0.0)


def redis_failed(app: Flask, err: Exception) -> None:
    if redis_usable(app):
        log.warning("maintenance flag: Redis unreachable (%s); reading the database", err)
    app.extensions["itsm_maintenance_redis_down_until"] = time.monotonic() + REDIS_RETRY_SECONDS


def from_database(app: Flask | None = None) -> State:
    """The durable copy; raises SQLAlchemyError when the database cannot be read."""
    app = _app(app)
    if not has_app_context():
        with app.app_context():
            return from_database(app)
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(MaintenanceState.__table__).where(MaintenanceState.id == 1)).first()
    if row is None:
        return OFF
    return State(on=row.active, since=row.changed_at, by=row.changed_by, message=row.message,
                 retry_after=row.retry_after, source="database")


def interpret(app: Flask, raw: bytes | None) -> State:
    """A reading of the Redis key: the state, or (no key) the database's, put back into Redis."""
    if raw is not None:
        try:
            return State.decode(raw)
        except (ValueError, KeyError, TypeError):
            log.error("maintenance flag: unreadable value in Redis %r; reading the database", raw[:100])
    state = from_database(app)
    try:
        redis_for(app).set(KEY, state.encode(), nx=True)
    except RedisError as err:
        redis_failed(app, err)
    return state


def current(app: Flask | None = None) -> State:
    """The flag as every process sees it now."""
    app = _app(app)
    if redis_usable(app):
        try:
            raw = redis_for(app).get(KEY)
        except RedisError as err:
            redis_failed(app, err)
        else:
            return interpret(app, raw)
    return from_database(app)


def _write_database(state: State | None) -> None:
    """Write the durable copy; None removes it (which reads as off)."""
    table = MaintenanceState.__table__
    if state is None:
        with db.engine.begin() as conn:
            conn.execute(sa.delete(table))
        return
    values = {"active": state.on, "changed_at": state.since, "changed_by": (state.by or "?")[:200],
              "message": (state.message or None) and state.message[:500], "retry_after": state.retry_after}
    with db.engine.begin() as conn:
        if conn.execute(sa.update(table).where(table.c.id == 1).values(**values)).rowcount == 0:
            conn.execute(sa.insert(table).values(id=1, **values))


def _switch(state: State, app: Flask | None) -> State:
    app = _app(app)
    if not has_app_context():
        with app.app_context():
            return _switch(state, app)
    before = from_database(app)
    before = None if before is OFF else before  # no row yet: a revert removes ours again
    _write_database(state)
    try:
        redis_for(app).set(KEY, state.encode())
    except RedisError as err:
        if state.on:
            _write_database(before)  # nothing changed: a flag the other processes may not see stops nothing
            raise MaintenanceError(f"cannot turn maintenance mode on: Redis at {redis_shown(app)} is "
                                   f"unreachable ({err}), so writes could not be stopped everywhere; nothing "
                                   "was changed") from None
        raise MaintenanceError(f"maintenance mode is off in the database, but Redis at {redis_shown(app)} "
                               f"is unreachable ({err}); run `flask maintenance off` again once it answers") from None
    app.extensions.pop("itsm_maintenance_redis_down_until", None)
    log.warning("maintenance mode %s by %s", "on" if state.on else "off", state.by)
    return state


def switch_on(by: str, message: str | None = None, retry_after: int = DEFAULT_RETRY_AFTER,
              app: Flask | None = None) -> State:
    """Turn it on (or update the message of one that is on); raises MaintenanceError without Redis."""
    return _switch(State(on=True, since=utcnow(), by=by, message=message, retry_after=retry_after), app)


def switch_off(by: str, app: Flask | None = None) -> State:
    return _switch(State(on=False, since=utcnow(), by=by), app)


def rewrite_durable_copy(app: Flask | None = None) -> None:
    """Write Redis's flag into the database again, after a restore replaced the database's copy with the
    backup's: should this process die now and Redis lose its data, the database still says on."""
    app = _app(app)
    try:
        raw = redis_for(app).get(KEY)
    except RedisError:
        return
    if raw is not None:
        _write_database(State.decode(raw))
