"""Fault: the SMTP server is down for a while, then comes back."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.tickets import service
from tests import factories
from tests.processes import wait_for
from tests.reliability.conftest import job_runs, queues_idle

MESSAGE_ID = re.compile(r"<itsm-outbox-(\d+)@")  # names the outbox row, the same on every attempt


@pytest.fixture
def app_config(mailserver):
    return mailserver.app_config()


def outbox(app) -> list[EmailMessage]:
    with app.app_context():
        rows = db.session.scalars(sa.select(EmailMessage).order_by(EmailMessage.id)).all()
        db.session.expunge_all()
        return rows


def states(app) -> list[tuple[int, str, int]]:
    return [(r.id, r.status, r.attempts) for r in outbox(app)]


def test_every_email_is_delivered_exactly_once_after_smtp_returns(app, procs, redis, mailserver):
    """Fault: nothing listens on the SMTP port while 7 emails are sent: 3 written one by one, each in
    its own commit (a ``send_email`` job each), and 4 written in one commit (a ``send_emails`` batch,
    which hands its rows to ``send_email`` on the first connection error). Each of them fails twice
    while the server is down (its first attempt and its first retry).

    Must survive: every email. Once the server listens again each one arrives exactly once (counted
    by its Message-ID, which names its outbox row), and every outbox row ends "sent" with its failed
    attempts counted; after the queues have gone quiet, nothing more arrives.
    """
    procs.worker(**mailserver.env())
    with app.app_context():
        for n in range(3):
            factories.make_ticket(f"Single {n}", requester_email=f"single{n}@example.com")
        for n in range(4):  # one transaction: its four emails are handed over after its commit
            service.create_ticket(actor=None, column=factories.column("New"), title=f"Batch {n}",
                                  requester_email=f"batch{n}@example.com")
        db.session.commit()
    rows = outbox(app)
    assert len(rows) == 7

    def all_failed_twice() -> bool:
        return all(r.status == "retrying" and r.attempts >= 2 for r in outbox(app))
    try:
        wait_for(all_failed_twice, timeout=60, interval=0.1, message="every email to fail twice while SMTP is down")
    except AssertionError as err:
        raise AssertionError(f"{err}; outbox (id, status, attempts): {states(app)}") from None
    assert not mailserver.messages
    assert {r.last_error.split(":")[0] for r in outbox(app)} <= {"ConnectionRefusedError", "SMTPServerDisconnected"}
    assert "send_emails" in {r.task_name for r in job_runs(app)}  # the four went through the batch sender

    mailserver.start()

    def all_sent() -> bool:
        rows_now = outbox(app)
        assert "failed" not in {r.status for r in rows_now}, f"an email failed for good: {states(app)}"
        return all(r.status == "sent" for r in rows_now)
    wait_for(all_sent, timeout=90, interval=0.2, message="every outbox row sent once SMTP is back")
    wait_for(lambda: queues_idle(redis), timeout=60, interval=0.2, message="no send job left queued or scheduled")

    received = Counter(int(MESSAGE_ID.match(m["Message-ID"]).group(1)) for m in mailserver.messages)
    assert received == Counter(r.id for r in rows), received  # each outbox row exactly once, none lost
    assert {int(MESSAGE_ID.match(m["Message-ID"]).group(1)): m["To"] for m in mailserver.messages} == {
        r.id: r.to_address for r in rows}
    # Failed twice or more, then sent, and counted so.
    assert all(r.status == "sent" and r.sent_at is not None and r.attempts >= 3 for r in outbox(app))
    failed = [r for r in job_runs(app) if r.status == "failed"]
    assert not failed, [(r.task_name, r.error_message) for r in failed]
