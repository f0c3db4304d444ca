"""Delivering outbox rows. A row is claimed atomically (pending/retrying -> sending) before it is
sent, so a retried job, a duplicate job or a flush can never send a message twice. A batch job
(``send_emails``) claims a few rows at a time with ``claim_many`` and gives back, with
``release``, the ones it never tried. When a send job has spent its own retries on a transient
failure, ``defer`` puts the row back to pending for a later try (``itsm.mail.delivery``'s schedule),
which ``take_due`` hands to a job when it is due."""

from __future__ import annotations

import contextlib
import smtplib
import threading
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import Flask, current_app
from flask_mail import Message
from sqlalchemy import bindparam, select, update

from itsm.dbtypes import utcnow
from itsm.extensions import db, mail
from itsm.inbound import refs
from itsm.mail import delivery
from itsm.mail.models import EmailMessage
from jobs import dbconn

messages = EmailMessage.__table__
WAITING = ("pending", "retrying")  # not sent yet, to be tried again
STALE_SENDING = timedelta(minutes=15)  # a "sending" row this old lost its worker mid-send
# A waiting row handed to a job (by a flush, or for a job-level retry) and still waiting this much later lost
# that job (Redis emptied, say): the next flush hands it to another. The claim keeps the two from both sending.
REQUEUE_AFTER = timedelta(minutes=10)
# What a claim hands the sender.
_RETURNED = (messages.c.id, messages.c.to_address, messages.c.subject, messages.c.body_text,
             messages.c.body_html, messages.c.attempts, messages.c.ticket_id)


def claim(message_id: int, job_id: str | None = None):
    """Take the row for sending; None when it is already sent, being sent or failed. (In a worker this
    is a kept, fully durable connection: the claim must be on disk before the message leaves.)"""
    return dbconn.write(lambda conn: conn.execute(
        update(messages).where(messages.c.id == message_id, messages.c.status.in_(("pending", "retrying")))
        .values(status="sending", attempts=messages.c.attempts + 1, job_id=job_id, claimed_at=utcnow())
        .returning(*_RETURNED)).first(), durable=True)


class Claimed(NamedTuple):
    """A row taken for sending, and the status it had before (to put it back untried)."""

    id: int
    to_address: str
    subject: str
    body_text: str
    body_html: str | None
    attempts: int
    ticket_id: int | None
    was: str


# Built once: these run for every message, and a prepared statement skips SQLAlchemy's rebuilding.
_CLAIM_MANY = {was: update(messages)
               .where(messages.c.id.in_(bindparam("b_ids", expanding=True)), messages.c.status == was)
               .values(status="sending", attempts=messages.c.attempts + 1, job_id=bindparam("b_job_id"),
                       claimed_at=bindparam("b_now"))
               .returning(*_RETURNED)
               for was in ("pending", "retrying")}
_MARK_SENT = (update(messages).where(messages.c.id == bindparam("b_id"))
              .values(status="sent", sent_at=bindparam("b_now"), last_error=None, next_attempt_at=None,
                      message_id=bindparam("b_message_id")))
# Every notification is automatic mail: auto-responders must not answer it (RFC 3834; Exchange's header).
AUTOMATIC = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def claim_many(message_ids: list[int], job_id: str | None = None) -> list[Claimed]:
    """Take every row of ``message_ids`` that is pending or retrying, in one transaction that is on disk
    before this returns (the durable connection, as ``claim``); rows already sent, being sent or failed
    are left out. Ordered by id."""
    if not message_ids:
        return []
    params = {"b_ids": list(dict.fromkeys(message_ids)), "b_job_id": job_id, "b_now": utcnow()}

    def take(conn) -> list[Claimed]:
        # One statement per earlier status, so that each row knows what to go back to; the second only
        # when the first left some of the ids (new rows are all pending).
        taken = [Claimed(*row, "pending") for row in conn.execute(_CLAIM_MANY["pending"], params)]
        if len(taken) < len(params["b_ids"]):
            taken += [Claimed(*row, "retrying") for row in conn.execute(_CLAIM_MANY["retrying"], params)]
        return taken

    return sorted(dbconn.write(take, durable=True), key=lambda row: row.id)


def release(rows: list[Claimed], job_id: str | None = None) -> int:
    """Claimed rows this job never tried go back as they were (status, attempt count), so that
    another job can send them; rows no longer "sending" under ``job_id`` are left alone."""
    groups = {was: [r.id for r in rows if r.was == was] for was in ("pending", "retrying")}

    def put_back(conn) -> int:
        return sum(conn.execute(
            update(messages).where(messages.c.id.in_(ids), messages.c.status == "sending",
                                   messages.c.job_id.is_not_distinct_from(job_id))
            .values(status=was, attempts=messages.c.attempts - 1)).rowcount for was, ids in groups.items() if ids)

    return dbconn.write(put_back, durable=True) if rows else 0


def pending_again(message_ids: list[int]) -> None:
    """Rows waiting for a retry job that could not be queued: pending and due, so that the next
    flush_outbox sends them."""
    if message_ids:
        dbconn.write(lambda conn: conn.execute(
            update(messages).where(messages.c.id.in_(message_ids), messages.c.status == "retrying")
            .values(status="pending", next_attempt_at=utcnow())), durable=True)


def _set(message_id: int, **values) -> None:
    dbconn.write(lambda conn: conn.execute(update(messages).where(messages.c.id == message_id).values(**values)),
                 durable=True)


_kept = threading.local()
_keep = False


def keep_connections(app: Flask | None = None) -> None:
    """Called in worker processes (a ``jobs.hooks`` worker-start hook): each keeps its SMTP connection open
    between messages instead of connecting, greeting and quitting for every one (half the cost of a small message)."""
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
                  sender=current_app.config["MAIL_DEFAULT_SENDER"], extra_headers=dict(AUTOMATIC))
    # Stable across retries; names the ticket (signed), so a reply's In-Reply-To finds it.
    msg.msgId = refs.message_id(row.id, row.ticket_id)
    if not _keep:
        conn = mail.connect().__enter__()
        try:
            conn.send(msg)
        finally:
            # Once the server has the message, a QUIT that fails (it hung up) must not make it a failed
            # send that is tried again: that would deliver it twice.
            with contextlib.suppress(Exception):
                conn.__exit__(None, None, None)
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


def mark_sent(message_id: int, ticket_id: int | None = None) -> None:
    """After delivery. Not waiting for the WAL flush (in a worker with JOBS_AUDIT_ASYNC_COMMIT): a
    PostgreSQL crash that loses this leaves the row "sending", and settle_stale_sending marks it failed
    as "may or may not have been delivered", the same as a worker that dies mid-send. Never sent twice."""
    sent_as = refs.message_id(message_id, ticket_id)  # what deliver() sent it with: kept for the replies
    dbconn.write(lambda conn: conn.execute(_MARK_SENT, {"b_id": message_id, "b_now": utcnow(),
                                                        "b_message_id": sent_as.strip("<>")}))


def mark_retrying(message_id: int, error: BaseException) -> None:
    """A transient failure the send job retries itself, within seconds; should that job be lost, the row
    is due for flush_outbox REQUEUE_AFTER from now."""
    now = utcnow()
    _set(message_id, status="retrying", last_error=describe(error), next_attempt_at=now + REQUEUE_AFTER)


def mark_failed(message_id: int, error: BaseException | str) -> None:
    _set(message_id, status="failed", last_error=error if isinstance(error, str) else describe(error),
         next_attempt_at=None)


def defer(message_id: int, error: BaseException, now: datetime | None = None) -> str | None:
    """After the send job spent its own retries on a transient failure: the row goes back to pending,
    due after the next delay of MAIL_RETRY_DELAYS, or is failed once MAIL_DELIVERY_DEADLINE_HOURS have
    passed since its delivery started. Only a row the job left "retrying" is touched (not one sent,
    being sent, failed or already deferred). Returns its new status, or None."""
    now = now or utcnow()
    hours = current_app.config["MAIL_DELIVERY_DEADLINE_HOURS"]
    delays = current_app.config["MAIL_RETRY_DELAYS"]

    def settle(conn) -> str | None:
        row = conn.execute(select(messages.c.deferrals, messages.c.delivery_started_at, messages.c.attempts)
                           .where(messages.c.id == message_id, messages.c.status == "retrying")).first()
        if row is None:
            return None
        when = delivery.next_attempt(now, row.delivery_started_at + timedelta(hours=hours), row.deferrals, delays)
        if when is None:
            values = {"status": "failed", "next_attempt_at": None, "last_error": (
                f"not delivered within {hours} h (MAIL_DELIVERY_DEADLINE_HOURS) after {row.attempts} attempt(s); "
                f"the last: {describe(error)}")[:2000]}
        else:
            values = {"status": "pending", "next_attempt_at": when, "deferrals": row.deferrals + 1,
                      "last_error": describe(error)}
        changed = conn.execute(update(messages).where(
            messages.c.id == message_id, messages.c.status == "retrying", messages.c.deferrals == row.deferrals)
            .values(**values)).rowcount
        return values["status"] if changed else None

    return dbconn.write(settle, durable=True)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


def _due(now: datetime) -> tuple:
    return messages.c.status.in_(WAITING), messages.c.next_attempt_at <= now


def due_for_flush(now: datetime, limit: int = 1000) -> list[int]:
    """The waiting rows whose next attempt is due at ``now``, oldest due first (what ``take_due`` takes)."""
    return list(db.session.scalars(select(messages.c.id).where(*_due(now))
                                   .order_by(messages.c.next_attempt_at, messages.c.id).limit(limit)))


def take_due(now: datetime, limit: int = 1000) -> list[int]:
    """Take the due rows for flush_outbox to queue, in one statement: each one's next attempt moves
    REQUEUE_AFTER on, so a second flush at the same time (which re-checks the condition on the rows the
    first changed) takes none of them. By id."""
    picked = select(messages.c.id).where(*_due(now)).order_by(messages.c.next_attempt_at, messages.c.id).limit(limit)
    with db.engine.begin() as conn:
        return sorted(conn.scalars(update(messages).where(messages.c.id.in_(picked), *_due(now))
                                   .values(next_attempt_at=now + REQUEUE_AFTER, queued_at=now)
                                   .returning(messages.c.id)))


def due_again(ids: list[int], now: datetime) -> None:
    """Rows taken by a flush that could not queue them (Redis down): due at the next flush."""
    if ids:
        with db.engine.begin() as conn:
            conn.execute(update(messages).where(messages.c.id.in_(ids), messages.c.status.in_(WAITING),
                                                messages.c.queued_at == now).values(next_attempt_at=now))


def settle_stale_sending(now: datetime) -> int:
    """A worker that died mid-send leaves "sending": whether it went out is unknown, so it is marked
    failed for an admin to retry rather than sent again blindly."""
    with db.engine.begin() as conn:
        return conn.execute(
            update(messages).where(messages.c.status == "sending",
                                   messages.c.claimed_at <= now - STALE_SENDING)
            .values(status="failed", next_attempt_at=None,
                    last_error="the worker stopped while sending; it may or may not have been delivered: retry "
                               "it from the outbox if it was not")).rowcount
