"""Holidays for business-day rules, and the audit of every processing run."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db

RUN_STATUSES = ("running", "success", "error")


class Holiday(db.Model):
    """A day business-day rules treat like a weekend (kept by admins)."""

    __tablename__ = "holidays"

    id = db.Column(db.Integer, primary_key=True)
    day = db.Column(db.Date, nullable=False, unique=True)
    name = db.Column(db.String(80), nullable=False, default="")
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class RecurringTicketRun(db.Model):
    """One pass of the recurring-ticket processor: what it found, did and how long it took."""

    __tablename__ = "recurring_ticket_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        Index("ix_recurring_ticket_runs_started", "started_at", "id"),
    )

    id = db.Column(db.Integer, primary_key=True)
    started_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime, nullable=True)
    status = db.Column(db.String(10), nullable=False, default="running")
    total_processed = db.Column(db.Integer, nullable=False, default=0)  # templates that were due
    total_created = db.Column(db.Integer, nullable=False, default=0)  # tickets opened
    total_skipped = db.Column(db.Integer, nullable=False, default=0)  # due times that opened no ticket
    missed = db.Column(db.Integer, nullable=False, default=0)  # due times that were already late
    ended = db.Column(db.Integer, nullable=False, default=0)  # series that reached their end
    duration_seconds = db.Column(db.Float, nullable=True)
    error_message = db.Column(db.Text, nullable=True)
    job_id = db.Column(db.String(64), nullable=True)  # the JobRun's job, when run by a worker
    trigger = db.Column(db.String(10), nullable=False, default="job")  # job or cli
