"""Tickets, their comments and their history."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index

from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db

# Stored as a small integer so "most urgent first" can use an index.
PRIORITIES = {1: "low", 2: "normal", 3: "high", 4: "urgent"}
PRIORITY_BY_NAME = {name: value for value, name in PRIORITIES.items()}
DEFAULT_PRIORITY = 2


class Ticket(db.Model):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority"),
        Index("ix_tickets_archived_created", "is_archived", "created_at", "id"),
        Index("ix_tickets_archived_updated", "is_archived", "updated_at", "id"),
        Index("ix_tickets_archived_priority", "is_archived", "priority", "created_at", "id"),
        Index("ix_tickets_column_archived_updated", "column_id", "is_archived", "updated_at", "id"),
        Index("ix_tickets_assignee_archived_created", "assignee_id", "is_archived", "created_at", "id"),
    )

    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(200), nullable=False)
    description = db.Column(db.Text, nullable=False, default="")
    priority = db.Column(db.SmallInteger, nullable=False, default=DEFAULT_PRIORITY)
    column_id = db.Column(db.Integer, db.ForeignKey("board_columns.id"), nullable=False)
    assignee_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    requester_email = db.Column(db.String(254), nullable=True)
    category = db.Column(db.String(80), nullable=False, default="")
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    done_at = db.Column(UTCDateTime, nullable=True)
    is_archived = db.Column(db.Boolean, nullable=False, default=False)
    archived_at = db.Column(UTCDateTime, nullable=True)

    column = db.relationship("BoardColumn", lazy="joined")
    assignee = db.relationship("User", foreign_keys=[assignee_id])
    created_by = db.relationship("User", foreign_keys=[created_by_id])
    events = db.relationship("TicketEvent", back_populates="ticket", lazy="dynamic", passive_deletes=True)
    comments = db.relationship("Comment", back_populates="ticket", lazy="dynamic", passive_deletes=True)

    @property
    def priority_name(self) -> str:
        return PRIORITIES.get(self.priority, "normal")

    def __repr__(self) -> str:
        return f"<Ticket {self.id} {self.title!r}>"


class TicketEvent(db.Model):
    """One change to a ticket: who, what (field -> [old, new]), when."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_created", "ticket_id", "created_at", "id"),)

    id = db.Column(db.Integer, primary_key=True)
    ticket_id = db.Column(db.Integer, db.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False)
    actor_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)  # None: the system
    kind = db.Column(db.String(32), nullable=False)
    changes = db.Column(db.JSON, nullable=False, default=dict)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    actor = db.relationship("User")
    ticket = db.relationship("Ticket", back_populates="events")


class Comment(db.Model):
    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_ticket_created", "ticket_id", "created_at", "id"),)

    id = db.Column(db.Integer, primary_key=True)
    ticket_id = db.Column(db.Integer, db.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False)
    author_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    body = db.Column(db.Text, nullable=False)
    is_public = db.Column(db.Boolean, nullable=False, default=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    author = db.relationship("User")
    ticket = db.relationship("Ticket", back_populates="comments")
