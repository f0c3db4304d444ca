"""Inbound mailboxes, the ledger of every message they delivered, and blocked senders.

The ledger (``inbound_messages``) gets a row for a message before anything is decided about it, and
that row commits in the same transaction as the ticket or comment it makes. Two unique keys make a
message count once: (mailbox, UIDVALIDITY, UID) for a copy seen again on the next fetch, and the
Message-ID among rows that changed the desk (a new ticket, a comment, a reopen), so the same message
in two of our mailboxes, or piped and also polled, acts once.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, UniqueConstraint, text

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db

SECURITY = ("tls", "starttls", "plain")
AFTER_IMPORT = ("seen", "move")
ON_CLOSED_REPLY = ("reopen", "new")
# What happened to a message. Acted: it changed the desk; ignored: recorded with its reason; error: to
# be tried again on the next fetch; failed: tried MAX_ATTEMPTS times, left in the mailbox for an admin.
ACTED = ("ticket", "comment", "reopened")
OUTCOMES = (*ACTED, "ignored", "error", "failed")
MAX_ATTEMPTS = 5


class Mailbox(db.Model):
    __tablename__ = "mailboxes"
    __table_args__ = (
        CheckConstraint(one_of("security", SECURITY), name="security"),
        CheckConstraint(one_of("after_import", AFTER_IMPORT), name="after_import"),
        CheckConstraint(one_of("on_closed_reply", ON_CLOSED_REPLY), name="on_closed_reply"),
        CheckConstraint("priority BETWEEN 1 AND 4", name="priority"),
    )

    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(80), nullable=False, unique=True)
    enabled = db.Column(db.Boolean, nullable=False, default=True)
    host = db.Column(db.String(255), nullable=False)
    port = db.Column(db.Integer, nullable=False, default=993)
    security = db.Column(db.String(10), nullable=False, default="tls")
    username = db.Column(db.String(255), nullable=False)
    password_encrypted = db.Column(db.Text, nullable=False)  # Fernet (itsm.inbound.secret); never shown
    folder = db.Column(db.String(255), nullable=False, default="INBOX")
    after_import = db.Column(db.String(10), nullable=False, default="seen")
    move_to = db.Column(db.String(255), nullable=True)
    # The new tickets' defaults.
    column_id = db.Column(db.Integer, db.ForeignKey("board_columns.id", ondelete="SET NULL"), nullable=True)
    priority = db.Column(db.SmallInteger, nullable=False, default=2)
    category = db.Column(db.String(80), nullable=False, default="")
    assignee_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    on_closed_reply = db.Column(db.String(10), nullable=False, default="reopen")
    # Where the incremental fetch stands: the folder's UIDVALIDITY and the highest UID recorded.
    uidvalidity = db.Column(db.BigInteger, nullable=True)
    last_uid = db.Column(db.BigInteger, nullable=False, default=0)
    last_fetch_at = db.Column(UTCDateTime, nullable=True)
    last_fetch_seconds = db.Column(db.Float, nullable=True)
    last_fetch_count = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.Text, nullable=True)
    failures_in_row = db.Column(db.Integer, nullable=False, default=0)
    alerted_at = db.Column(UTCDateTime, nullable=True)  # admins were told of this failing episode
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    column = db.relationship("BoardColumn")
    assignee = db.relationship("User")


class InboundMessage(db.Model):
    __tablename__ = "inbound_messages"
    __table_args__ = (
        CheckConstraint(one_of("outcome", OUTCOMES), name="outcome"),
        UniqueConstraint("mailbox_id", "uidvalidity", "uid", name="uq_inbound_messages_copy"),
        Index("uq_inbound_messages_acted", "message_id", unique=True,
              postgresql_where=text("outcome IN ('ticket', 'comment', 'reopened')"),
              sqlite_where=text("outcome IN ('ticket', 'comment', 'reopened')")),
        Index("ix_inbound_messages_mailbox_received", "mailbox_id", "received_at", "id"),
        Index("ix_inbound_messages_received", "received_at", "id"),
        Index("ix_inbound_messages_message_id", "message_id"),
        # The per-sender cap counts a sender's new tickets of the last hour.
        Index("ix_inbound_messages_sender_received", "sender", "received_at"),
        Index("ix_inbound_messages_raw_sha256", "raw_sha256"),  # the blob cleanup's look-up
    )

    id = db.Column(db.Integer, primary_key=True)
    mailbox_id = db.Column(db.Integer, db.ForeignKey("mailboxes.id", ondelete="SET NULL"), nullable=True)
    message_id = db.Column(db.String(255), nullable=False)
    uidvalidity = db.Column(db.BigInteger, nullable=True)  # None for a piped message
    uid = db.Column(db.BigInteger, nullable=True)
    sender = db.Column(db.String(254), nullable=False, default="")
    subject = db.Column(db.String(255), nullable=False, default="")
    size = db.Column(db.Integer, nullable=False, default=0)
    received_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    outcome = db.Column(db.String(10), nullable=False)
    reason = db.Column(db.Text, nullable=False, default="")
    ticket_id = db.Column(db.Integer, db.ForeignKey("tickets.id", ondelete="SET NULL"), nullable=True)
    comment_id = db.Column(db.Integer, db.ForeignKey("comments.id", ondelete="SET NULL"), nullable=True)
    attempts = db.Column(db.Integer, nullable=False, default=1)
    done_on_server_at = db.Column(UTCDateTime, nullable=True)  # flagged or moved on the IMAP server
    # The message as it arrived (.eml), kept for audit in the attachment store; admins download it.
    raw_sha256 = db.Column(db.String(64), db.ForeignKey("attachment_blobs.sha256"), nullable=True)

    mailbox = db.relationship("Mailbox")
    ticket = db.relationship("Ticket")


class BlockedSender(db.Model):
    """An address (``pat@example.com``) or a whole domain (``example.com``) whose mail is ignored."""

    __tablename__ = "inbound_blocked_senders"

    id = db.Column(db.Integer, primary_key=True)
    pattern = db.Column(db.String(254), nullable=False, unique=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
