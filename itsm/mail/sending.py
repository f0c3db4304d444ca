"""Delivering outbox rows. A row is claimed atomically (pending/retrying -> sending) before it is
sent, so a retried job, a duplicate job or a flush can never send a message twice."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
from datetime import datetime, timedelta

from flask import current_app
from flask_mail import Message
from sqlalchemy import or_, select, update

from itsm.dbtypes import utcnow
from itsm.extensions import db, mail
from itsm.mail.models import EmailMessage
from jobs import dbconn

messages = EmailMessage.__table__
STALE_SENDING = timedelta(minutes=15)  # a "sending" row this old lost its worker mid-send
_HOST = socket.getfqdn() or "localhost"


def claim(message_id: int, job_id: str | None = None):
    """Take the row for sending; None when it is already sent, being sent or failed. (In a worker this
    is a kept, fully durable connection: the claim must be on disk before the message leaves.)"""
    return dbconn.write(lambda conn: conn.execute(
        update(messages).where(messages.c.id == message_id, messages.c.status.in_(("pending", "retrying")))
        .values(status="sending", attempts=messages.c.attempts + 1, job_id=job_id, claimed_at=utcnow())
        .returning(messages.c.id, messages.c.to_address, messages.c.subject, messages.c.body_text,
                   messages.c.body_html, messages.c.attempts)).first(), durable=True)


def _set(message_id: int, **values) -> None:
    dbconn.write(lambda conn: conn.execute(update(messages).where(messages.c.id == message_id).values(**values)),
                 durable=True)


_kept = threading.local()
_keep = False


def keep_connections() -> None:
    """Called in worker processes: each keeps its SMTP connection open between messages instead of
    connecting, greeting and quitting for every one (half the cost of a small message)."""
    global _keep
    _keep = True


def _connection():
    conn = getattr(_kept, "conn", None)
    if conn is None:
        conn = mail.connect()
        conn.__enter__()
        _kept.conn = conn
    return conn


def drop_connection() -> None:
    conn, _kept.conn = getattr(_kept, "conn", None), None
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.__exit__(None, None, None)


def deliver(row) -> None:
    """Hand one claimed row to the SMTP server (Flask-Mail, the MAIL_* settings)."""
    msg = Message(subject=row.subject, recipients=[row.to_address], body=row.body_text, html=row.body_html,
                  sender=current_app.config["MAIL_DEFAULT_SENDER"])
    msg.msgId = f"<itsm-outbox-{row.id}@{_HOST}>"  # stable across retries
    if not _keep:
        mail.send(msg)
        return
    try:
        _connection().send(msg)
    except smtplib.SMTPServerDisconnected:
        # The server closed the kept connection while it sat idle (before this message was accepted):
        # connect again, once. Anything else goes to the job's retries.
        drop_connection()
        try:
            _connection().send(msg)
        except Exception:
            drop_connection()
            raise
    except Exception:
        drop_connection()
        raise


def mark_sent(message_id: int) -> None:
    _set(message_id, status="sent", sent_at=utcnow(), last_error=None)


def mark_retrying(message_id: int, error: BaseException) -> None:
    _set(message_id, status="retrying", last_error=describe(error))


def mark_failed(message_id: int, error: BaseException | str) -> None:
    _set(message_id, status="failed", last_error=error if isinstance(error, str) else describe(error))


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def due_for_flush(now: datetime, limit: int = 1000) -> list[int]:
    """Pending rows whose send job never ran (Redis was down, or the job was lost): created a
    minute ago or more, and not handed to a job in the last ten minutes."""
    rows = db.session.scalars(
        select(EmailMessage.id).where(
            EmailMessage.status == "pending", EmailMessage.created_at <= now - timedelta(minutes=1),
            or_(EmailMessage.queued_at.is_(None), EmailMessage.queued_at <= now - timedelta(minutes=10)))
        .order_by(EmailMessage.created_at, EmailMessage.id).limit(limit)).all()
    return list(rows)


def mark_queued(ids: list[int], now: datetime) -> None:
    if ids:
        with db.engine.begin() as conn:
            conn.execute(update(messages).where(messages.c.id.in_(ids)).values(queued_at=now))


def settle_stale_sending(now: datetime) -> int:
    """A worker that died mid-send leaves "sending": whether it went out is unknown, so it is marked
    failed for an admin to retry rather than sent again blindly."""
    with db.engine.begin() as conn:
        return conn.execute(
            update(messages).where(messages.c.status == "sending",
                                   messages.c.claimed_at <= now - STALE_SENDING)
            .values(status="failed", last_error="the worker stopped while sending; it may or may not have "
                                                "been delivered: retry it from the outbox if it was not")).rowcount
