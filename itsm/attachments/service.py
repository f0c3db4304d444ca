"""Attaching files to tickets and comments, and removing them, each recorded in the ticket's history.
Callers commit: a file is saved with the ticket or comment it belongs to, or not at all."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, literal, select, true
from sqlalchemy.engine import Connection
from werkzeug.datastructures import FileStorage

from itsm.attachments import store, thumbnails
from itsm.attachments.detect import SAFE_INLINE
from itsm.attachments.models import Attachment
from itsm.attachments.names import clean_name
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.tickets.models import Comment, Ticket
from itsm.tickets.service import record
from itsm.users.models import User


def label(attachment: Attachment) -> str:
    """How the history names a file."""
    return attachment.filename


def attach(ticket: Ticket, files: Iterable[FileStorage], actor: User | None,
           comment: Comment | None = None) -> list[Attachment]:
    """Store the files on the ticket (or the comment), one history event each; the caller commits."""
    added = []
    now = utcnow()
    for upload in files:
        stored = store.put(upload.stream)
        thumbnail = thumbnails.make(upload.stream) if stored.content_type in SAFE_INLINE else None
        attachment = Attachment(ticket=ticket, comment=comment, sha256=stored.sha256,
                                thumbnail_sha256=store.put(io.BytesIO(thumbnail)).sha256 if thumbnail else None,
                                filename=clean_name(upload.filename), size=stored.size,
                                content_type=stored.content_type, uploaded_by=actor, created_at=now)
        db.session.add(attachment)
        changes = {"attachment": [None, attachment.filename]}
        if comment is not None:
            changes["on"] = [None, "internal comment" if not comment.is_public else "comment"]
        record(ticket, "attached", actor, changes)
        added.append(attachment)
    if added:
        ticket.updated_at = now
    return added


def may_delete(user: User, attachment: Attachment) -> bool:
    return user.is_admin or (attachment.uploaded_by_id is not None and attachment.uploaded_by_id == user.id)


def remove(attachment: Attachment, actor: User | None) -> None:
    """Take the file off its ticket; its blob goes with the next cleanup if nothing else uses it."""
    ticket = attachment.ticket
    db.session.delete(attachment)
    ticket.updated_at = utcnow()
    record(ticket, "detached", actor, {"attachment": [attachment.filename, None]})


def of_ticket(ticket_id: int) -> list[Attachment]:
    return db.session.scalars(select(Attachment).where(Attachment.ticket_id == ticket_id)
                              .order_by(Attachment.created_at, Attachment.id)).all()


def shows_inline(attachment: Attachment) -> bool:
    return attachment.content_type in SAFE_INLINE


def link_from_templates(conn: Connection, ticket_ids: list[int], now: datetime) -> int:
    """Give each new occurrence its template's own attachments (not its comments'): new rows pointing at
    the same blobs, in the caller's transaction, in one statement. Returns how many were linked."""
    if not ticket_ids:
        return 0
    source = (
        select(Ticket.id, Attachment.comment_id, Attachment.sha256, Attachment.thumbnail_sha256,
               Attachment.filename, Attachment.size,
               Attachment.content_type, Attachment.uploaded_by_id, literal(now, Attachment.created_at.type),
               true())
        .join(Attachment, Attachment.ticket_id == Ticket.template_id)
        .where(Ticket.id.in_(ticket_ids), Attachment.comment_id.is_(None))
        .order_by(Ticket.id, Attachment.id)
    )
    columns = ["ticket_id", "comment_id", "sha256", "thumbnail_sha256", "filename", "size", "content_type",
               "uploaded_by_id", "created_at", "from_template"]
    return conn.execute(insert(Attachment.__table__).from_select(columns, source)).rowcount
