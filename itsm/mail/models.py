"""The outbox: every email is a row first, written in the transaction of the change that caused it."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, and_

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db

STATUSES = ("pending", "sending", "retrying", "sent", "failed", "bounced")  # bounced: a DSN came back for it
DEFERRED = "deferred"  # not a status: pending or retrying rows that were tried already (see deferred())


class EmailMessage(db.Model):
    __tablename__ = "email_messages"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        Index("ix_email_messages_status_created", "status", "created_at", "id"),
        Index("ix_email_messages_created", "created_at", "id"),
        # flush_outbox's look-up: the due rows are one index range per status (pending, retrying).
        Index("ix_email_messages_due", "status", "next_attempt_at"),
    )

    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(40), nullable=False)  # e.g. ticket_created, ticket_assigned, test
    to_address = db.Column(db.String(254), nullable=False)
    subject = db.Column(db.String(200), nullable=False)
    body_text = db.Column(db.Text, nullable=False)
    body_html = db.Column(db.Text, nullable=True)
    status = db.Column(db.String(10), nullable=False, default="pending")
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.Text, nullable=True)
    ticket_id = db.Column(db.Integer, db.ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    queued_at = db.Column(UTCDateTime, nullable=True)  # when flush_outbox last handed it to a send job
    # While pending or retrying: when flush_outbox hands it to a send job (again) if it is still waiting
    # then. A minute after it was written (its commit queued a job already), ten minutes after a flush
    # queued it (in case that job was lost), or the retry delay after a transient failure.
    next_attempt_at = db.Column(UTCDateTime, nullable=True)
    deferrals = db.Column(db.Integer, nullable=False, default=0)  # transient failures the outbox retried
    # When the outbox began trying: when it was written, or an admin's retry. The delivery deadline
    # (MAIL_DELIVERY_DEADLINE_HOURS) counts from here.
    delivery_started_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    claimed_at = db.Column(UTCDateTime, nullable=True)  # when the current attempt took it for sending
    sent_at = db.Column(UTCDateTime, nullable=True)
    job_id = db.Column(db.String(64), nullable=True)
    # One email per event that must not be told twice (a digest per day, an alert per late episode):
    # a second run of the job that writes it finds the key taken.
    dedupe_key = db.Column(db.String(200), nullable=True, unique=True)
    # The Message-ID it is sent with (itsm.inbound.refs): a reply's In-Reply-To finds its ticket by it.
    message_id = db.Column(db.String(255), nullable=True, unique=True)


def deferred():
    """Emails tried and not sent yet, that the outbox tries again: waiting for a retry, not failed."""
    return and_(EmailMessage.status.in_(("pending", "retrying")), EmailMessage.attempts > 0)


class EmailOptOut(db.Model):
    """An address (a requester's) that unsubscribed from ticket updates through its signed link."""

    __tablename__ = "email_opt_outs"

    address = db.Column(db.String(254), primary_key=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
