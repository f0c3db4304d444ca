"""Fault: the SMTP server is down for a while, then comes back."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.tickets import service
from tests import factories
from tests.processes import wait_for
from tests.reliability.conftest import job_runs, queues_idle

MESSAGE_ID = re.compile(r"<itsm-outbox-(\d+)[.@]")  # names the outbox row, the same on every attempt


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


OUTAGE = 120  # seconds the SMTP server is down: four times the send job's own retry budget (~31 s)


# Two minutes of wall time: run on PostgreSQL, the production database. The outbox's deferral, deadline and
# due-time rules run on both databases in tests/integration/test_outbox_retry.py.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_two_minute_smtp_outage_delivers_every_email_exactly_once_without_a_click(app, procs, redis, mailserver):
    """Fault: nothing listens on the SMTP port for two minutes while 50 notifications are written (20 in
    commits of their own, 30 in three commits of 10), with a real worker pair and a real scheduler firing
    ``flush_outbox`` every 2 seconds. The outbox's retry schedule is shortened to seconds
    (MAIL_RETRY_DELAYS=5,10,20) so that the outage spans several rounds of it.

    Must survive: every email. The send jobs exhaust their own retries long before the server is back;
    their rows must go back to *pending* with a next attempt, never *failed*, and flush_outbox must send
    them when due. Once the server listens again all 50 arrive, each exactly once (counted by Message-ID),
    with no admin action; after the queues have gone quiet, nothing more arrives.
    """
    from itsm.schedules import service as schedules
    from itsm.schedules.validation import Definition
    from tests.integration.test_scheduler_processes import wait_until_up

    env = {**mailserver.env(), "MAIL_RETRY_DELAYS": "5,10,20"}
    procs.start("scheduler")
    procs.worker("--concurrency", "2", **env)
    wait_until_up(redis, workers=2)
    with app.app_context():
        schedules.save(Definition(name="flush-often", task="flush_outbox", kind="interval", every=2,
                                  period="seconds", misfire_policy="skip"))
        db.session.commit()
    down_until = time.monotonic() + OUTAGE

    def none_failed() -> list[EmailMessage]:
        rows = outbox(app)
        assert "failed" not in {r.status for r in rows}, f"an email failed for good: {states(app)}"
        return rows

    with app.app_context():
        for n in range(50):
            if n % 10 == 0 and n >= 20:  # 20, 30, 40: ten tickets in one commit (a send_emails batch)
                for k in range(10):
                    service.create_ticket(actor=None, column=factories.column("New"), title=f"Batch {n + k}",
                                          requester_email=f"batch{n + k}@example.com")
                db.session.commit()
            elif n < 20:
                factories.make_ticket(f"Single {n}", requester_email=f"single{n}@example.com")
            if n < 20 or n % 10 == 0:
                time.sleep(2)  # spread over the first minute of the outage
                none_failed()
    assert len(outbox(app)) == 50
    wait_for(lambda: none_failed() and time.monotonic() >= down_until, timeout=OUTAGE + 30, interval=0.5,
             message="the end of the outage")
    assert not mailserver.messages
    rows = outbox(app)
    assert max(r.deferrals for r in rows) >= 2, states(app)  # the outbox's own retries took over, round after round
    assert all(r.next_attempt_at is not None for r in rows if r.status == "pending")

    mailserver.start()

    def all_sent() -> bool:
        return all(r.status == "sent" for r in none_failed())
    try:
        wait_for(all_sent, timeout=120, interval=0.5, message="every outbox row sent once SMTP is back")
    except AssertionError as err:
        left = [(r.id, r.status, r.attempts, r.deferrals, r.next_attempt_at) for r in outbox(app) if r.status != "sent"]
        raise AssertionError(f"{err}; not sent (id, status, attempts, deferrals, next attempt): {left}") from None
    wait_for(lambda: queues_idle(redis), timeout=60, interval=0.2, message="no send job left queued or scheduled")

    received = Counter(int(MESSAGE_ID.match(m["Message-ID"]).group(1)) for m in mailserver.messages)
    assert received == Counter(r.id for r in rows), received  # each outbox row exactly once: 0 lost, 0 twice
    assert sorted(m["To"] for m in mailserver.messages) == sorted(r.to_address for r in rows)
