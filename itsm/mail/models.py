"""The outbox: every email is a row first, written in the transaction of the change that caused it."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db

STATUSES = ("pending", "sending", "retrying", "sent", "failed")


class EmailMessage(db.Model):
    __tablename__ = "email_messages"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        Index("ix_email_messages_status_created", "status", "created_at", "id"),
        Index("ix_email_messages_created", "created_at", "id"),
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
    queued_at = db.Column(UTCDateTime, nullable=True)  # when a send job was last enqueued for it
    claimed_at = db.Column(UTCDateTime, nullable=True)  # when the current attempt took it for sending
    sent_at = db.Column(UTCDateTime, nullable=True)
    job_id = db.Column(db.String(64), nullable=True)
    # One email per event that must not be told twice (a digest per day, an alert per late episode):
    # a second run of the job that writes it finds the key taken.
    dedupe_key = db.Column(db.String(200), nullable=True, unique=True)


class EmailOptOut(db.Model):
    """An address (a requester's) that unsubscribed from ticket updates through its signed link."""

    __tablename__ = "email_opt_outs"

    address = db.Column(db.String(254), primary_key=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
