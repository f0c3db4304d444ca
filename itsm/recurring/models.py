"""Holidays for business-day rules, and the audit of every processing run."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, text

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db
from itsm.recurrence import INTERVALS
from itsm.recurrence_rules import MONTHLY_MODES
from itsm.tickets.models import BUSINESS_DAYS, CATCH_UP, OPEN_POLICIES

RUN_STATUSES = ("running", "success", "error")


class TicketRecurrence(db.Model):
    """A recurring template's rule and schedule, evaluated in the wall-clock time of its zone.

    Kept beside the ticket rather than in it: every processing pass moves the schedule on,
    and that write should touch this narrow row and its due index, not the ticket and its
    list and search indexes.
    """

    __tablename__ = "ticket_recurrences"
    __table_args__ = (
        CheckConstraint(one_of("recurrence_interval", INTERVALS), name="interval"),
        CheckConstraint("recurrence_every BETWEEN 1 AND 1000", name="every"),
        CheckConstraint("recurrence_count IS NULL OR recurrence_count >= 1", name="count"),
        CheckConstraint("recurrence_lead_hours BETWEEN 0 AND 8760", name="lead_hours"),
        CheckConstraint(one_of("recurrence_open_policy", OPEN_POLICIES), name="open_policy"),
        CheckConstraint(one_of("recurrence_catch_up", CATCH_UP), name="catch_up"),
        CheckConstraint(one_of("recurrence_monthly_mode", MONTHLY_MODES), name="monthly_mode"),
        CheckConstraint(one_of("recurrence_business_days", BUSINESS_DAYS), name="business_days"),
        # The processor walks this in due order; ended series (no due time) are not in it.
        Index("ix_ticket_recurrences_due", "recurrence_due_at", "ticket_id",
              sqlite_where=text("recurrence_due_at IS NOT NULL"),
              postgresql_where=text("recurrence_due_at IS NOT NULL")),
    )

    ticket_id = db.Column(db.Integer, db.ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    recurrence_active = db.Column(db.Boolean, nullable=False, default=True)  # False: paused
    recurrence_interval = db.Column(db.String(10), nullable=False)
    recurrence_every = db.Column(db.Integer, nullable=False, default=1)
    recurrence_time_zone = db.Column(db.String(64), nullable=False)
    recurrence_anchor = db.Column(UTCDateTime, nullable=False)  # the series' first occurrence
    next_occurrence = db.Column(UTCDateTime, nullable=True)  # None once the series has ended
    recurrence_due_at = db.Column(UTCDateTime, nullable=True)  # next_occurrence minus the lead time
    recurrence_weekdays = db.Column(db.String(20), nullable=False, default="")  # "0,2,4"; 0 = Monday
    recurrence_monthly_mode = db.Column(db.String(10), nullable=False, default="day")
    recurrence_ordinal = db.Column(db.SmallInteger, nullable=True)  # 1..4, -1 = last
    recurrence_ordinal_weekday = db.Column(db.SmallInteger, nullable=True)
    recurrence_weekdays_only = db.Column(db.Boolean, nullable=False, default=False)
    recurrence_business_days = db.Column(db.String(4), nullable=False, default="")
    recurrence_end_date = db.Column(db.Date, nullable=True)  # inclusive, local
    recurrence_count = db.Column(db.Integer, nullable=True)  # occurrences in the whole series
    recurrence_position = db.Column(db.Integer, nullable=False, default=0)  # occurrences passed so far
    recurrence_lead_hours = db.Column(db.Integer, nullable=False, default=0)
    recurrence_open_policy = db.Column(db.String(16), nullable=False, default="always")
    recurrence_catch_up = db.Column(db.String(8), nullable=False, default="latest")
    recurrence_last_run_at = db.Column(UTCDateTime, nullable=True)

    ticket = db.relationship("Ticket", back_populates="recurrence")


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
