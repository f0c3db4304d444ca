"""Writing to the outbox, and handing new rows to the send job once their transaction commits.

``queue_email`` adds a row to the current session: it commits (or rolls back) with the
change that caused it. After the commit the new rows' send jobs are enqueued; if Redis is
down then, the row simply stays pending and the every-minute ``flush_outbox`` sends it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app, render_template
from jinja2 import TemplateError
from redis.exceptions import RedisError
from sqlalchemy import event, func, insert, select

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.inbound import refs
from itsm.mail.models import EmailMessage
from itsm.templating import EMAIL_ZONE
from itsm.users.models import User
from itsm.zones import is_known_zone
from jobs import registry
from jobs.exceptions import JobsError

log = logging.getLogger(__name__)
# A new row's commit queues its send job; flush_outbox takes it only if it is still pending this much later.
FLUSH_AFTER = timedelta(minutes=1)
BATCH_SIZE = 50  # rows per send_emails job
_PENDING_KEY = "itsm_outbox_new"
_IDS_KEY = "itsm_outbox_ids"


class OutboxError(ValueError):
    """An email that cannot be written (a bad address); nothing is queued."""


def one_line(text: str, limit: int = 200) -> str:
    """Header values on one line: a newline in a subject or name can never start a new header."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def checked_address(address: str) -> str:
    try:
        return validate_email(one_line(address, 254), check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise OutboxError(f"not a valid email address: {address!r} ({err})") from None


def queue_email(kind: str, to: str, subject: str, template: str, *, ticket_id: int | None = None,
                **context) -> EmailMessage:
    """Render ``templates/email/<template>.txt`` and ``.html`` now (in the recipient's time zone) and add
    the outbox row to the session."""
    message = EmailMessage(**rendered(kind, to, subject, template, ticket_id=ticket_id, **context))
    db.session.add(message)
    db.session.info.setdefault(_PENDING_KEY, []).append(message)
    return message


def _after_flush(session, _context) -> None:
    # Ids exist from the flush on; after the commit the objects are expired and must not be touched. Each
    # with the savepoint it was written in (None: none), which takes it along if it is rolled back.
    new = session.info.get(_PENDING_KEY)
    if new:
        savepoint = session.get_nested_transaction()
        session.info.setdefault(_IDS_KEY, []).extend((m.id, savepoint) for m in new if m.id is not None)
        new.clear()


def _after_commit(session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released (SQLAlchemy calls that a commit too): its rows are not committed yet
    session.info.pop(_PENDING_KEY, None)
    enqueue([row_id for row_id, _ in session.info.pop(_IDS_KEY, [])])


def _within(savepoint, undone) -> bool:
    while savepoint is not None:
        if savepoint is undone:
            return True
        savepoint = savepoint.parent
    return False


def _after_rollback(session, previous_transaction) -> None:
    # Rows added since are gone either way (begin_nested flushed what came before a savepoint).
    session.info.pop(_PENDING_KEY, None)
    if previous_transaction.nested:  # a savepoint (one message of an inbound batch): the rest still commits
        written = session.info.get(_IDS_KEY)
        if written:
            session.info[_IDS_KEY] = [(row_id, sp) for row_id, sp in written if not _within(sp, previous_transaction)]
        return
    session.info.pop(_IDS_KEY, None)


def register() -> None:
    """Hook the session once per process (create_app calls it)."""
    if not event.contains(db.session, "after_commit", _after_commit):
        event.listen(db.session, "after_flush", _after_flush)
        event.listen(db.session, "after_commit", _after_commit)
        event.listen(db.session, "after_soft_rollback", _after_rollback)


def insert_rows(conn, rows: list[dict]) -> list[int]:
    """Outbox rows written on a Core connection (set-based work such as the recurring-ticket pass), in
    that connection's transaction; queue their send jobs with ``enqueue`` once it has committed."""
    if not rows:
        return []
    table = EmailMessage.__table__
    return list(conn.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows))


def recipient_zone(address: str) -> str:
    """The zone an email's times are written in: the recipient's profile choice when the address is a
    user's, else TIME_ZONE (requesters without an account)."""
    zone = db.session.scalar(select(User.time_zone).where(func.lower(User.email) == address.lower()))
    return zone if is_known_zone(zone) else current_app.config["TIME_ZONE"]


def rendered(kind: str, to: str, subject: str, template: str, *, ticket_id: int | None = None,
             time_zone: str | None = None, **context) -> dict:
    """An outbox row's values, rendered now (for ``queue_email`` and ``insert_rows``), with times in
    ``time_zone`` (default: the recipient's, looked up by address). A template that is missing or broken
    does not undo the change that caused the email: the row is written *failed*, with the reason, where
    the outbox page shows it."""
    context.setdefault("base_url", current_app.config.get("BASE_URL", ""))
    # A reply quotes it: the ticket is found by it even where a provider rewrote our Message-ID.
    context["reference"] = refs.token(ticket_id) if ticket_id else None
    address = checked_address(to)
    context[EMAIL_ZONE] = time_zone if is_known_zone(time_zone) else recipient_zone(address)
    now = utcnow()
    row = {"kind": kind, "to_address": address, "subject": one_line(subject), "status": "pending",
           "attempts": 0, "ticket_id": ticket_id, "created_at": now, "last_error": None,
           "delivery_started_at": now, "next_attempt_at": now + FLUSH_AFTER, "deferrals": 0}
    try:
        row["body_text"] = render_template(f"email/{template}.txt", **context)
        if context["reference"]:
            row["body_text"] = row["body_text"].rstrip("\n") + f"\n\n[ref:{context['reference']}]\n"
        row["body_html"] = render_template(f"email/{template}.html", **context)
    except TemplateError as err:
        log.error("email template %r could not be rendered: %s", template, err)
        name = getattr(err, "name", None) or template
        row.update(body_text="", body_html=None, status="failed", next_attempt_at=None,
                   last_error=f"template email/{name}: {type(err).__name__}: {err}"[:2000])
    return row


def chunks(ids: list[int], size: int = BATCH_SIZE) -> list[list[int]]:
    """``ids`` in order, in as few chunks of at most ``size`` as possible, of even length (so two or more
    ids never leave a chunk of one)."""
    count = -(-len(ids) // size)
    if count == 0:
        return []
    base, extra = divmod(len(ids), count)
    out, start = [], 0
    for n in range(count):
        end = start + base + (1 if n < extra else 0)
        out.append(ids[start:end])
        start = end
    return out


def queue_sends(ids: list[int]) -> list[str]:
    """Hand committed outbox rows to the send jobs in one round trip: ``send_email`` for a single row,
    ``send_emails`` chunks for more. Raises as ``apply_many`` does (Redis down)."""
    ids = list(dict.fromkeys(int(i) for i in ids))
    # By name: the service hands rows to the mail jobs without importing them (they import the service).
    if len(ids) == 1:
        return registry.get("send_email").apply_many([((ids[0],), {})])
    return registry.get("send_emails").apply_many([((chunk,), {}) for chunk in chunks(ids)])


def enqueue(ids: list[int]) -> None:
    """Hand committed outbox rows to the send jobs (one row: ``send_email``; more: ``send_emails``
    batches); with Redis down they wait for flush_outbox."""
    if not ids:
        return
    try:
        queue_sends(ids)
    except (RedisError, JobsError) as err:
        log.warning("could not queue %d email(s) (%s); flush_outbox will send them", len(ids), err)
    except Exception:  # eager mode (JOBS_EAGER) sends inline: its failure is on the row, not the caller's
        log.exception("sending %d email(s) inline failed; see the outbox", len(ids))
