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


def keep_connections() -> None:
    """Called by worker processes (after fork)."""
    global _keep
    _keep = True


def write(fn: Callable[..., T]) -> T:
    """Run ``fn(conn)`` in a transaction and commit it."""
    if not _keep:
        with db.engine.begin() as conn:
            return fn(conn)
    for attempt in (1, 2):
        conn = getattr(_local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = _local.conn = db.engine.connect()
        try:
            with conn.begin():
                return fn(conn)
        except DBAPIError as err:
            if not err.connection_invalidated or attempt == 2:
                raise
            _local.conn = None  # the server closed it: a fresh connection, one more time
    raise AssertionError("unreachable")
