"""Settings admins may change at run time; each falls back to its configured default."""

from __future__ import annotations

from flask import current_app

from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db

ARCHIVE_AFTER_HOURS = "TICKET_ARCHIVE_AFTER_HOURS"
MIN_ARCHIVE_HOURS, MAX_ARCHIVE_HOURS = 0.01, 87_600  # 36 seconds to 10 years, on the page and the CLI alike


class Setting(db.Model):
    __tablename__ = "settings"

    key = db.Column(db.String(80), primary_key=True)
    value = db.Column(db.String(200), nullable=False)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_by_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)


def get(key: str) -> str | None:
    row = db.session.get(Setting, key)
    return row.value if row else None


def put(key: str, value: str | None, actor_id: int | None) -> None:
    """Set (or, with None, clear back to the default) a setting. Callers commit."""
    row = db.session.get(Setting, key)
    if value is None:
        if row is not None:
            db.session.delete(row)
        return
    if row is None:
        row = Setting(key=key, value=value)
        db.session.add(row)
    row.value, row.updated_at, row.updated_by_id = value, utcnow(), actor_id


def archive_after_hours() -> float:
    """The admins' value from the settings page, else TICKET_ARCHIVE_AFTER_HOURS."""
    raw = get(ARCHIVE_AFTER_HOURS)
    return float(raw) if raw is not None else float(current_app.config["TICKET_ARCHIVE_AFTER_HOURS"])
