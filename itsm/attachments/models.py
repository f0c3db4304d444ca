"""Attachments and the content-addressed blobs they point at, stored in chunks.

A blob is identified by its SHA-256: the same file attached twice is stored once. Its bytes are
split into rows of ``chunk_size`` (1 MiB) so a file is written and read a chunk at a time, in
constant memory, on PostgreSQL and SQLite alike. A blob is written in the same transaction as the
attachment that first points at it, so it is never half-saved; one no attachment points at any more
is deleted by the daily cleanup job.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index

from itsm.dbtypes import UTCDateTime, utcnow
from itsm.extensions import db

CHUNK_SIZE = 1 << 20


class Blob(db.Model):
    __tablename__ = "attachment_blobs"
    __table_args__ = (CheckConstraint("size > 0", name="size"), CheckConstraint("chunk_size > 0", name="chunk_size"))

    sha256 = db.Column(db.String(64), primary_key=True)
    size = db.Column(db.BigInteger, nullable=False)
    chunk_size = db.Column(db.Integer, nullable=False, default=CHUNK_SIZE)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class BlobChunk(db.Model):
    __tablename__ = "attachment_chunks"

    sha256 = db.Column(db.String(64), db.ForeignKey("attachment_blobs.sha256", ondelete="CASCADE"),
                       primary_key=True)
    seq = db.Column(db.Integer, primary_key=True, autoincrement=False)  # 0, 1, ...: offset = seq * chunk_size
    data = db.Column(db.LargeBinary, nullable=False)


class Attachment(db.Model):
    """A file on a ticket (``comment_id`` None) or on one of its comments."""

    __tablename__ = "attachments"
    __table_args__ = (
        CheckConstraint("size > 0", name="size"),
        Index("ix_attachments_ticket_created", "ticket_id", "created_at", "id"),
        Index("ix_attachments_sha256", "sha256"),  # the cleanup's "is any attachment still using it"
        Index("ix_attachments_thumbnail_sha256", "thumbnail_sha256"),
    )

    id = db.Column(db.Integer, primary_key=True)
    ticket_id = db.Column(db.Integer, db.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False)
    comment_id = db.Column(db.Integer, db.ForeignKey("comments.id", ondelete="CASCADE"), nullable=True)
    # No cascade: a blob goes only when nothing points at it (the cleanup job).
    sha256 = db.Column(db.String(64), db.ForeignKey("attachment_blobs.sha256"), nullable=False)
    # A small WebP of a safe image (itsm.attachments.thumbnails), itself a blob; None for other files.
    thumbnail_sha256 = db.Column(db.String(64), db.ForeignKey("attachment_blobs.sha256"), nullable=True)
    filename = db.Column(db.String(255), nullable=False)
    size = db.Column(db.BigInteger, nullable=False)
    content_type = db.Column(db.String(127), nullable=False)
    uploaded_by_id = db.Column(db.Integer, db.ForeignKey("users.id"), nullable=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    # Linked from its recurring template when the occurrence was opened (the same blob, not a copy).
    from_template = db.Column(db.Boolean, nullable=False, default=False)

    ticket = db.relationship("Ticket")
    thumbnail = db.relationship("Blob", foreign_keys=[thumbnail_sha256])
    comment = db.relationship("Comment")
    uploaded_by = db.relationship("User")

    @property
    def is_internal(self) -> bool:
        return self.comment is not None and not self.comment.is_public
