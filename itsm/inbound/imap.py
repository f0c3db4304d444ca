"""Fetching a mailbox over IMAP (IMAPClient): incrementally by UID, UIDVALIDITY checked, in batches.

Each message is recorded and acted on (``intake.receive``, a savepoint each) in its batch's transaction,
committed once per batch before the server is told anything; only then are the batch's messages flagged
\\Seen or moved. A crash before the commit leaves nothing of the batch: it is fetched again. A crash
after it leaves ledger rows without ``done_on_server_at``: the next fetch finds them, does nothing again,
and only flags or moves. The \\Seen flag is never read: people read the mailbox on their phones.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field

from flask import current_app
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.inbound import alerts, intake, secret
from itsm.inbound.models import MAX_ATTEMPTS, InboundMessage, Mailbox

log = logging.getLogger(__name__)
BATCH = 50
TIMEOUT = 30  # seconds for any one IMAP answer
MAX_MESSAGE_BYTES = 40 * 1048576  # larger messages are recorded as refused, never downloaded
ALERT_AFTER = 3  # failed fetches in a row before admins hear of it (once per episode)
NETWORK_ERRORS = (OSError, IMAPClientError, ssl.SSLError, socket.timeout)


class FetchError(RuntimeError):
    """The mailbox could not be reached or read; the reason is one line."""


@dataclass
class Report:
    mailbox: str
    fetched: int = 0
    outcomes: dict = field(default_factory=dict)
    flagged: int = 0
    seconds: float = 0.0
    error: str | None = None

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def connect(mailbox: Mailbox) -> IMAPClient:
    """Logged in and with the folder selected."""
    if mailbox.security == "plain" and not current_app.config["MAIL_INBOUND_ALLOW_PLAIN"]:
        raise FetchError("plain IMAP is refused (set MAIL_INBOUND_ALLOW_PLAIN=1 for a local or test server)")
    client = None
    try:
        client = IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.security == "tls", timeout=TIMEOUT)
        if mailbox.security == "starttls":
            client.starttls(ssl.create_default_context())
        client.login(mailbox.username, secret.unseal(mailbox.password_encrypted))
    except (secret.SecretError, *NETWORK_ERRORS) as err:
        if client is not None:
            _logout(client)
        if isinstance(err, secret.SecretError):
            raise FetchError(str(err)) from None
        raise FetchError(f"cannot log in to {mailbox.host}:{mailbox.port}: {_say(err)}") from None
    return client


def _say(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def test_connection(mailbox: Mailbox) -> str:
    """One line: logged in, and how many messages the folder holds."""
    client = connect(mailbox)
    try:
        info = client.select_folder(mailbox.folder, readonly=True)
        return f"logged in to {mailbox.host}:{mailbox.port}; {mailbox.folder} holds {info.get(b'EXISTS', 0)} messages"
    except NETWORK_ERRORS as err:
        raise FetchError(f"{mailbox.folder}: {_say(err)}") from None
    finally:
        _logout(client)


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 -- the connection is gone already: its socket must still be closed,
        with contextlib.suppress(Exception):  # or a long-running worker leaks one per failed fetch
            client.shutdown()


def _pending_on_server(mailbox: Mailbox, uidvalidity: int) -> tuple[list[int], list[int]]:
    """UIDs recorded but not yet flagged or moved, and UIDs whose processing failed and is tried again."""
    rows = db.session.execute(select(InboundMessage.uid, InboundMessage.outcome, InboundMessage.attempts).where(
        InboundMessage.mailbox_id == mailbox.id, InboundMessage.uidvalidity == uidvalidity,
        InboundMessage.done_on_server_at.is_(None))).all()
    retry = [uid for uid, outcome, attempts in rows if outcome == "error" and attempts < MAX_ATTEMPTS]
    settle = [uid for uid, outcome, _ in rows if outcome not in ("error", "failed")]
    return settle, retry


def _done_on_server(client: IMAPClient, mailbox: Mailbox, uids: list[int], uidvalidity: int) -> int:
    if not uids:
        return 0
    if mailbox.after_import == "move" and mailbox.move_to:
        client.move(uids, mailbox.move_to)
    else:
        client.add_flags(uids, [b"\\Seen"])
    db.session.execute(InboundMessage.__table__.update().where(
        InboundMessage.mailbox_id == mailbox.id, InboundMessage.uidvalidity == uidvalidity,
        InboundMessage.uid.in_(uids)).values(done_on_server_at=utcnow()))
    db.session.commit()
    return len(uids)


def fetch(mailbox: Mailbox, dry_run: bool = False, batch: int = BATCH) -> Report:
    """Fetch what is new in the mailbox (and what an earlier fetch left unfinished)."""
    report, started = Report(mailbox.name), time.monotonic()
    try:
        client = connect(mailbox)
    except FetchError as err:
        return _failed(mailbox, report, started, str(err), dry_run)
    try:
        _fetch(client, mailbox, report, dry_run, batch)
    except NETWORK_ERRORS as err:
        return _failed(mailbox, report, started, f"{mailbox.host}:{mailbox.port}: {_say(err)}", dry_run)
    finally:
        _logout(client)
    report.seconds = time.monotonic() - started
    if not dry_run:
        mailbox.last_fetch_at, mailbox.last_fetch_seconds = utcnow(), report.seconds
        mailbox.last_fetch_count, mailbox.last_error = report.fetched, None
        mailbox.failures_in_row, mailbox.alerted_at = 0, None
        db.session.commit()
    return report


def _fetch(client: IMAPClient, mailbox: Mailbox, report: Report, dry_run: bool, batch: int) -> None:
    info = client.select_folder(mailbox.folder, readonly=dry_run)
    uidvalidity = int(info[b"UIDVALIDITY"])
    if mailbox.uidvalidity != uidvalidity:
        # The folder was recreated: its UIDs mean other messages now. Start from the beginning; what was
        # acted on already is found again by its Message-ID and recorded as a duplicate.
        if mailbox.uidvalidity is not None:
            log.warning("mailbox %s: UIDVALIDITY changed (%s -> %s); reading the folder again", mailbox.name,
                        mailbox.uidvalidity, uidvalidity)
        mailbox.uidvalidity, mailbox.last_uid = uidvalidity, 0
        if not dry_run:
            db.session.commit()
    settle, retry = _pending_on_server(mailbox, uidvalidity)
    if not dry_run:
        report.flagged += _done_on_server(client, mailbox, settle, uidvalidity)
    new = [uid for uid in client.search(["UID", f"{mailbox.last_uid + 1}:*"]) if uid > mailbox.last_uid]
    todo = sorted((set(new) | set(retry)) - set(settle))
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        sizes = client.fetch(chunk, ["RFC822.SIZE"])
        small = [uid for uid in chunk if sizes.get(uid, {}).get(b"RFC822.SIZE", 0) <= MAX_MESSAGE_BYTES]
        for uid in chunk:
            if uid in sizes and uid not in small:
                _too_large(mailbox, uid, uidvalidity, sizes[uid][b"RFC822.SIZE"], report, dry_run)
        bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
        done = []
        for uid in small:
            raw = bodies.get(uid, {}).get(b"BODY[]")
            if raw is None:
                continue  # expunged meanwhile
            result = intake.receive(raw, mailbox, uid=uid, uidvalidity=uidvalidity, dry_run=dry_run,
                                    batched=not dry_run)
            if not result.already:  # a copy the ledger has: nothing done again, only the flag is due
                report.fetched += 1
                report.count(result.outcome)
            if result.outcome not in ("error", "failed"):
                done.append(uid)
        if not dry_run:
            mailbox.last_uid = max([mailbox.last_uid, *chunk])
            db.session.commit()  # the batch's messages, all at once
            report.flagged += _done_on_server(client, mailbox, done, uidvalidity)


def _too_large(mailbox: Mailbox, uid: int, uidvalidity: int, size: int, report: Report, dry_run: bool) -> None:
    report.count("ignored")
    if dry_run or intake.copy_of(mailbox, uidvalidity, uid) is not None:
        return
    db.session.add(InboundMessage(
        mailbox_id=mailbox.id, uid=uid, uidvalidity=uidvalidity, message_id=f"uid-{uidvalidity}-{uid}@too-large",
        size=size, outcome="ignored", attempts=1,
        reason=f"too large: {size / 1048576:.1f} MiB (the limit is {MAX_MESSAGE_BYTES // 1048576} MiB); "
               "not downloaded"))
    db.session.commit()


def _failed(mailbox: Mailbox, report: Report, started: float, reason: str, dry_run: bool) -> Report:
    db.session.rollback()
    report.error, report.seconds = reason, time.monotonic() - started
    if dry_run:
        return report
    mailbox = db.session.get(Mailbox, mailbox.id)
    mailbox.last_fetch_at, mailbox.last_fetch_seconds, mailbox.last_error = utcnow(), report.seconds, reason
    mailbox.failures_in_row += 1
    if mailbox.failures_in_row >= ALERT_AFTER and mailbox.alerted_at is None:
        alerts.mailbox_failing(mailbox)
        mailbox.alerted_at = utcnow()
    db.session.commit()
    return report
