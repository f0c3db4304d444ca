"""Column types shared by the models."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import DateTime, func, or_
from sqlalchemy.types import TypeDecorator


def one_of(column: str, values: Iterable[str]) -> str:
    """SQL for a CHECK that ``column`` holds one of ``values``, built from the Python constants."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every database.

    PostgreSQL keeps ``timestamptz``; SQLite has no zone, so values are stored as
    naive UTC and handed back aware. Naive input is refused: it is always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def same_name(column, name: str):
    """``column`` equal to ``name`` ignoring case. The exact name too: SQLite's lower() folds ASCII only,
    so "Ärger" would not find "Ärger" and a unique index would refuse the insert (a 500) instead of a
    name check (a message)."""
    return or_(func.lower(column) == name.lower(), column == name)
