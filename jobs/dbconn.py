"""Database writes of the job runtime, on a connection each worker thread keeps.

A worker writes a few audit rows per job; checking a pooled connection out and back
in (with its pre-ping) for each one cost as much as the write. Outside worker
processes this is a plain ``engine.begin()``. A connection lost with its server is
replaced and the write tried once more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from itsm.extensions import db

T = TypeVar("T")
_local = threading.local()
_keep = False
_async_commit = False


def keep_connections(async_commit: bool = False) -> None:
    """Called by worker processes (after fork). With ``async_commit`` on PostgreSQL, audit
    transactions do not wait for the WAL flush (JOBS_AUDIT_ASYNC_COMMIT)."""
    global _keep, _async_commit
    _keep, _async_commit = True, async_commit


def _connect(durable: bool = False):
    conn = db.engine.connect()
    if _async_commit and not durable and conn.dialect.name == "postgresql":
        # This connection only ever writes the audit, and is never handed back to the pool:
        # a PostgreSQL crash could lose its last fraction of a second of rows; a worker crash
        # cannot. Claims and the jobs' own writes use other connections and stay synchronous.
        conn.exec_driver_sql("SET synchronous_commit TO off")
        conn.commit()
    return conn


def write(fn: Callable[..., T], durable: bool = False) -> T:
    """Run ``fn(conn)`` in a transaction and commit it. ``durable`` writes (the outbox's claims) use a
    second kept connection that always waits for the WAL flush, whatever JOBS_AUDIT_ASYNC_COMMIT says."""
    if not _keep:
        with db.engine.begin() as conn:
            return fn(conn)
    slot = "durable" if durable else "conn"
    for attempt in (1, 2):
        conn = getattr(_local, slot, None)
        if conn is None or conn.closed or conn.invalidated:
            conn = _connect(durable)
            setattr(_local, slot, conn)
        try:
            with conn.begin():
                return fn(conn)
        except DBAPIError as err:
            if not err.connection_invalidated or attempt == 2:
                raise
            setattr(_local, slot, None)  # the server closed it: a fresh connection, one more time
    raise AssertionError("unreachable")
