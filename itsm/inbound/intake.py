"""One message in: recorded in the ledger, then a new ticket, a comment on its ticket, or ignored with
the reason, all in one transaction. Fetched (IMAP) and piped (``flask mail receive``) mail both come
through ``receive``.

The order of the decisions is the order of the issue's rules: mail we must never answer (our own
coming back, bounces, auto-responses, blocked senders) first; then a message already acted on (the
same Message-ID through another mailbox or the pipe); then the thread; then the per-sender cap for
new tickets.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from itsm.attachments import service as attachments
from itsm.attachments import store
from itsm.board.models import BoardColumn, first_column
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.inbound import parsing, refs
from itsm.inbound.models import ACTED, MAX_ATTEMPTS, BlockedSender, InboundMessage, Mailbox
from itsm.mail.models import EmailMessage
from itsm.tickets import service as tickets
from itsm.tickets.models import Ticket
from itsm.users.models import User

log = logging.getLogger(__name__)
DESCRIPTION_MAX = 20000  # as the ticket form's


@dataclass(frozen=True)
class Result:
    ledger_id: int
    outcome: str
    reason: str
    ticket_id: int | None = None
    comment_id: int | None = None
    already: bool = False  # the ledger had this copy: nothing was done again (only the server's flag is due)


def copy_of(mailbox: Mailbox | None, uidvalidity: int | None, uid: int | None) -> InboundMessage | None:
    if mailbox is None or uid is None:
        return None
    return db.session.scalar(select(InboundMessage).where(
        InboundMessage.mailbox_id == mailbox.id, InboundMessage.uidvalidity == uidvalidity,
        InboundMessage.uid == uid))


def _result(row: InboundMessage, already: bool = False) -> Result:
    return Result(row.id, row.outcome, row.reason, row.ticket_id, row.comment_id, already)


class _Step:
    """How one message's work is kept or undone: in a transaction of its own (commit, rollback), or, in a
    fetch's batch, in a savepoint of the batch's transaction, which the fetch commits once for the batch: one
    message that fails is undone alone, and a batch costs one durable commit instead of one per message."""

    def __init__(self, batched: bool) -> None:
        self.savepoint = db.session.begin_nested() if batched else None

    def undo(self) -> None:
        """Back to before this message, ready to write again."""
        if self.savepoint is None:
            db.session.rollback()
        else:
            self.savepoint.rollback()
            self.savepoint = db.session.begin_nested()

    def keep(self) -> None:
        if self.savepoint is None:
            db.session.commit()
        else:
            self.savepoint.commit()  # RELEASE: kept if the batch commits

    def drop(self) -> None:
        if self.savepoint is None:
            db.session.rollback()
        else:
            self.savepoint.rollback()


def receive(raw: bytes, mailbox: Mailbox | None, *, uid: int | None = None, uidvalidity: int | None = None,
            dry_run: bool = False, batched: bool = False) -> Result:
    """Record and act on one message; commits, unless ``batched``: then the caller commits (a fetch, once per
    batch, before it tells the server anything). Raises only when the database cannot record anything (the
    caller leaves the message where it is: it is tried again)."""
    existing = copy_of(mailbox, uidvalidity, uid)
    if existing is not None and (existing.outcome != "error" or existing.attempts >= MAX_ATTEMPTS):
        return _result(existing, already=True)
    step = _Step(batched)
    try:
        parsed = parsing.parse(raw, current_app.config["MAIL_TICKET_PREFIX"])
    except parsing.ParseError as err:
        return _record_failure(raw, mailbox, uid, uidvalidity, existing, f"cannot be parsed: {err}", step,
                               permanent=True)
    try:
        row = _decide(raw, parsed, mailbox, uid, uidvalidity, existing, dry_run)
    except IntegrityError:
        step.undo()  # the same message acted on meanwhile (another worker, the pipe)
        existing = copy_of(mailbox, uidvalidity, uid)
        row = _decide(raw, parsed, mailbox, uid, uidvalidity, existing, dry_run)
    except Exception as err:  # noqa: BLE001 -- recorded with its reason; the next fetch tries again
        step.undo()
        log.exception("inbound message %s could not be processed", parsed.message_id)
        return _record_failure(raw, mailbox, uid, uidvalidity, copy_of(mailbox, uidvalidity, uid),
                               f"{type(err).__name__}: {err}"[:500], step, parsed=parsed)
    if dry_run:
        step.drop()
        return _result(row)
    step.keep()
    return _result(row)


def _attempt(raw: bytes, parsed, mailbox, uid, uidvalidity, existing) -> InboundMessage:
    """The copy's ledger row (new, or the one an earlier try left), counting this try."""
    row = existing or InboundMessage(mailbox_id=mailbox.id if mailbox else None, uid=uid, uidvalidity=uidvalidity,
                                     attempts=0)
    row.message_id = (parsed.message_id if parsed else row.message_id or _fallback_id(raw))[:255]
    if parsed is not None:
        row.sender, row.subject = parsed.sender[:254], parsed.subject[:255]
    row.size = len(raw)
    row.received_at = utcnow()
    row.attempts += 1
    db.session.add(row)
    return row


def _ledger(raw: bytes, parsed, mailbox, uid, uidvalidity, existing) -> InboundMessage:
    row = _attempt(raw, parsed, mailbox, uid, uidvalidity, existing)
    row.outcome, row.reason = "error", "being processed"  # until decided, in this same transaction
    return row


def _record_failure(raw, mailbox, uid, uidvalidity, existing, reason, step: _Step, *, permanent=False,
                    parsed=None):
    """An error, tried again on the next fetch; failed once it was tried MAX_ATTEMPTS times (or can
    never work): left in the mailbox for an admin, with a Reprocess button."""
    row = _attempt(raw, parsed, mailbox, uid, uidvalidity, existing)
    row.outcome = "failed" if permanent or row.attempts >= MAX_ATTEMPTS else "error"
    row.reason = reason
    step.keep()
    return _result(row)


def _fallback_id(raw: bytes) -> str:
    return f"sha256-{hashlib.sha256(raw).hexdigest()}@itsm.invalid"


def _set(row: InboundMessage, outcome: str, reason: str, ticket_id=None, comment_id=None) -> InboundMessage:
    row.outcome, row.reason, row.ticket_id, row.comment_id = outcome, reason, ticket_id, comment_id
    db.session.flush()  # the acted-once index speaks now, inside the transaction
    return row


def _blocked(address: str) -> bool:
    domain = address.rpartition("@")[2]
    patterns = {address, domain, f"@{domain}"} - {""}
    return db.session.scalar(select(func.count()).select_from(BlockedSender)
                             .where(func.lower(BlockedSender.pattern).in_(patterns))) > 0


def _agent(address: str) -> User | None:
    if not address:
        return None
    return db.session.scalar(select(User).where(func.lower(User.email) == address.lower(), User.active.is_(True)))


def _ticket_by_ids(ids) -> Ticket | None:
    """A ticket named by the Message-IDs a reply answers: ours (signed, or found on the outbox row), or a
    message of the requester's we turned into a ticket or comment."""
    for message_id in ids:
        ticket_id = refs.ticket_of_message_id(message_id)
        if ticket_id is None:
            ticket_id = db.session.scalar(select(EmailMessage.ticket_id).where(EmailMessage.message_id == message_id))
        if ticket_id is None:
            ticket_id = db.session.scalar(select(InboundMessage.ticket_id).where(
                InboundMessage.message_id == message_id[:255], InboundMessage.outcome.in_(ACTED)).limit(1))
        ticket = db.session.get(Ticket, ticket_id) if ticket_id else None
        if ticket is not None and not ticket.is_recurring:
            return ticket
    return None


def _on_ticket(address: str, ticket: Ticket) -> bool:
    """The requester, or someone whose mail already went onto this ticket."""
    if not address:
        return False
    if (ticket.requester_email or "").lower() == address:
        return True
    return db.session.scalar(select(func.count()).select_from(InboundMessage).where(
        InboundMessage.ticket_id == ticket.id, InboundMessage.sender == address,
        InboundMessage.outcome.in_(ACTED))) > 0


def _thread(parsed, sender_agent: User | None) -> tuple[Ticket | None, str]:
    """The ticket a reply belongs to, and how it was found."""
    ticket = _ticket_by_ids([*parsed.in_reply_to, *reversed(parsed.references)])
    if ticket is not None:
        return ticket, "by its In-Reply-To/References"
    for value in parsed.tokens:
        ticket_id = refs.ticket_of_token(value)
        ticket = db.session.get(Ticket, ticket_id) if ticket_id else None
        if ticket is not None and not ticket.is_recurring:
            return ticket, "by the reference in its text"
    if parsed.ticket_ref is not None:
        ticket = db.session.get(Ticket, parsed.ticket_ref)
        # A subject tag anyone can type: it counts only for the requester or someone already on the ticket.
        # An agent's address alone is not enough either (From is easily forged): agents reply through a thread.
        if ticket is not None and not ticket.is_recurring and sender_agent is None \
                and _on_ticket(parsed.sender, ticket):
            return ticket, "by the subject tag"
    return None, ""


def _attach_parts(ticket: Ticket, parsed, comment=None) -> list[str]:
    """The mail's files as the ticket's attachments, within the attachment limits; returns notes on what
    was left out."""
    limit = current_app.config["ATTACHMENT_MAX_MB"] * 1048576
    notes, files = [], []
    for n, part in enumerate(parsed.attachments, 1):
        name = part.filename or f"attachment-{n}"
        if not part.data:
            notes.append(f"{name} was empty and left out")
        elif len(part.data) > limit:
            notes.append(f"{name} ({len(part.data) / 1048576:.1f} MiB) is over the {limit // 1048576} MiB limit "
                         "and was left out")
        else:
            files.append(FileStorage(io.BytesIO(part.data), filename=name))
    attachments.attach(ticket, files, None, comment)
    return notes


def _keep_raw(row: InboundMessage, raw: bytes) -> None:
    """The message as it came, for audit: a blob (stored once), downloadable by admins from the log."""
    stored = store.put(io.BytesIO(raw)) if raw else None
    row.raw_sha256 = stored.sha256 if stored else None


def _over_cap(sender: str) -> bool:
    cap = current_app.config["MAIL_INBOUND_MAX_PER_SENDER_HOUR"]
    since = utcnow() - timedelta(hours=1)
    made = db.session.scalar(select(func.count()).select_from(InboundMessage).where(
        InboundMessage.sender == sender, InboundMessage.outcome == "ticket", InboundMessage.received_at >= since))
    return made >= cap


def _reopen(ticket: Ticket) -> None:
    first = first_column()
    if ticket.is_archived:
        tickets.set_archived(ticket, None, False)
    if first is not None and ticket.column is not None and ticket.column.is_done_column:
        tickets.move_ticket(ticket, first, None)


def _decide(raw, parsed, mailbox, uid, uidvalidity, existing, dry_run) -> InboundMessage:
    row = _ledger(raw, parsed, mailbox, uid, uidvalidity, existing)
    note = "; ".join(parsed.warnings)
    if refs.is_ours(parsed.message_id):
        return _set(row, "ignored", "own mail: one of our notifications came back")
    if parsed.is_bounce:
        bounced = parsed.bounced_message_id
        if bounced and not dry_run:
            db.session.execute(update(EmailMessage).where(EmailMessage.message_id == bounced)
                               .values(status="bounced", last_error=f"bounced: {parsed.subject}"[:2000]))
        return _set(row, "ignored", f"bounce{' of ' + bounced if bounced else ''}")
    if parsed.auto_reason:
        return _set(row, "ignored", f"auto-reply ({parsed.auto_reason})")
    if _blocked(parsed.sender):
        return _set(row, "ignored", "blocked sender")
    first = db.session.scalar(select(InboundMessage).where(
        InboundMessage.message_id == row.message_id, InboundMessage.outcome.in_(ACTED), InboundMessage.id != row.id))
    if first is not None:
        return _set(row, "ignored", f"duplicate of a message already on #{first.ticket_id}", first.ticket_id)
    sender_agent = _agent(parsed.sender)  # looked up once: the thread, the author and the warning need it
    ticket, how = _thread(parsed, sender_agent)
    agent = sender_agent if ticket is not None and how != "by the subject tag" else None
    followed = None
    if ticket is not None and mailbox is not None and mailbox.on_closed_reply == "new" and _closed(ticket):
        ticket, followed = None, ticket
    if ticket is not None:
        reopened = _closed(ticket)
        if reopened:
            _reopen(ticket)
        body = parsed.reply_text.strip() or "(no text)"
        comment = tickets.add_comment(ticket, agent, body[:DESCRIPTION_MAX], is_public=True,
                                      author_email=None if agent else parsed.sender or None)
        db.session.flush()
        notes = _attach_parts(ticket, parsed, comment)
        _keep_raw(row, raw)
        reason = "; ".join(filter(None, [f"found {how}", *notes, note]))
        return _set(row, "reopened" if reopened else "comment", reason, ticket.id, comment.id)
    if _over_cap(parsed.sender):
        return _set(row, "ignored", f"over the cap: {current_app.config['MAIL_INBOUND_MAX_PER_SENDER_HOUR']} new "
                                    f"tickets an hour from {parsed.sender}")
    column = (db.session.get(BoardColumn, mailbox.column_id) if mailbox and mailbox.column_id else None) \
        or first_column()
    if column is None:
        raise RuntimeError("the board has no columns to open a ticket in")
    warning = ""
    if sender_agent is not None:
        warning = "the sender's address is an agent's: recorded as the requester, with no agent's rights"
    ticket = tickets.create_ticket(
        actor=None, column=column, title=parsed.clean_subject[:200], description=parsed.text[:DESCRIPTION_MAX],
        priority=mailbox.priority if mailbox else 2, category=mailbox.category if mailbox else "",
        assignee_id=mailbox.assignee_id if mailbox else None, requester_email=(parsed.reply_to or parsed.sender)
        or None)
    db.session.flush()
    notes = _attach_parts(ticket, parsed)
    _keep_raw(row, raw)
    if followed is not None:
        notes.append(f"a reply to #{followed.id}, which is closed: a new ticket (the mailbox's setting)")
        tickets.add_comment(ticket, None, f"Follow-up of #{followed.id} (closed), by email.", is_public=False)
    elif parsed.ticket_ref is not None:
        notes.append(f"its subject names #{parsed.ticket_ref}, which this sender is not on: a new ticket instead")
    return _set(row, "ticket", "; ".join(filter(None, [*notes, warning, note])), ticket.id)


def _closed(ticket: Ticket) -> bool:
    return ticket.is_archived or bool(ticket.column and ticket.column.is_done_column)
