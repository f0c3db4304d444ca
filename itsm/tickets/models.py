"""Tickets, their comments and their history."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, UniqueConstraint

from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db

# Stored as a small integer so "most urgent first" can use an index.
PRIORITIES = {1: "low", 2: "normal", 3: "high", 4: "urgent"}
PRIORITY_BY_NAME = {name: value for value, name in PRIORITIES.items()}
DEFAULT_PRIORITY = 2

# What a recurring template does when its time comes round again.
OPEN_POLICIES = {
    "always": "Always create a new ticket",
    "skip_open": "Skip while the previous ticket is still open",
    "close_previous": "Close the previous ticket when creating the next",
}
CATCH_UP = {
    "latest": "Create one ticket for the latest missed time",
    "all": "Create every missed ticket (up to 100)",
}
BUSINESS_DAYS = {"": "Any day", "skip": "Skip weekends and holidays", "next": "Move to the next business day"}


class Ticket(db.Model):
    """A ticket, or (``is_recurring``) a template that opens a fresh ticket on a schedule.

    Templates sit on no board column and stay out of the desk's lists; their rule and
    schedule live in ``recurrence`` (a TicketRecurrence row). The tickets they open carry
    ``template_id`` and ``occurrence_at``, unique together, so an occurrence can never be
    created twice whoever processes it.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority"),
        CheckConstraint("is_recurring OR column_id IS NOT NULL", name="column_required"),
        UniqueConstraint("template_id", "occurrence_at", name="uq_tickets_template_occurrence"),
        # The list and board indexes lead with is_recurring so templates cost the desk nothing.
        Index("ix_tickets_recurring_archived_created", "is_recurring", "is_archived", "created_at", "id"),
        Index("ix_tickets_recurring_archived_updated", "is_recurring", "is_archived", "updated_at", "id"),
        Index("ix_tickets_recurring_archived_priority", "is_recurring", "is_archived", "priority", "created_at",
              "id"),
        Index("ix_tickets_column_archived_updated", "column_id", "is_archived", "updated_at", "id"),
        # The board: each column's cards by priority, then oldest first (one range per priority).
        Index("ix_tickets_column_archived_priority", "column_id", "is_archived", "priority", "created_at", "id"),
        # Auto-archive finds done tickets past the threshold, and an empty pass costs one index probe.
        Index("ix_tickets_archived_done", "is_archived", "done_at"),
        Index("ix_tickets_assignee_recurring_archived_created", "assignee_id", "is_recurring", "is_archived",
              "created_at", "id"),
    )

    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(200), nullable=False)
    description = db.Column(db.Text, nullable=False, default="")
    priority = db.Column(db.SmallInteger, nullable=False, default=DEFAULT_PRIORITY)
    column_id = db.Column(db.Integer, db.ForeignKey("board_columns.id"), nullable=True)  # None on templates
    assignee_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    requester_email = db.Column(db.String(254), nullable=True)
    category = db.Column(db.String(80), nullable=False, default="")
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    done_at = db.Column(UTCDateTime, nullable=True)
    is_archived = db.Column(db.Boolean, nullable=False, default=False)
    archived_at = db.Column(UTCDateTime, nullable=True)

    # Occurrences: the template they came from and the time they stand for.
    template_id = db.Column(db.Integer, db.ForeignKey("tickets.id"), nullable=True)
    occurrence_at = db.Column(UTCDateTime, nullable=True)

    is_recurring = db.Column(db.Boolean, nullable=False, default=False)  # a template: see .recurrence

    column = db.relationship("BoardColumn", lazy="joined")
    assignee = db.relationship("User", foreign_keys=[assignee_id])
    created_by = db.relationship("User", foreign_keys=[created_by_id])
    events = db.relationship("TicketEvent", back_populates="ticket", lazy="dynamic", passive_deletes=True)
    comments = db.relationship("Comment", back_populates="ticket", lazy="dynamic", passive_deletes=True)
    template = db.relationship("Ticket", remote_side=[id], foreign_keys=[template_id])
    recurrence = db.relationship("TicketRecurrence", uselist=False, back_populates="ticket",
                                 cascade="all, delete-orphan", passive_deletes=True)

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
    author_email = db.Column(db.String(254), nullable=True)  # a requester's reply by email: no user
    body = db.Column(db.Text, nullable=False)
    is_public = db.Column(db.Boolean, nullable=False, default=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    author = db.relationship("User")
    ticket = db.relationship("Ticket", back_populates="comments")
