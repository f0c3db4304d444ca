"""The outbox as a delivery queue, with a real SMTP server and Redis: a transient failure is deferred and
tried again when due (never before, never twice), a permanent one or the deadline fails the message, and
the outbox page and the admins' digests tell deferred from failed."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.automation.admin_mail import send_daily_digests
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.delivery import Undeliverable
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import queue_email
from itsm.mail.tasks import flush_outbox, send_email, send_emails
from itsm.templating import show_time
from jobs.models import JobRun
from tests.conftest import AuthActions
from tests.mailserver import _Inbox
from tests.processes import wait_for

REFUSED = "nobody@example.com"


class PickyInbox(_Inbox):
    """Refuses REFUSED for good (550) and busy@example.com for now (450)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 -- aiosmtpd's name
        if address == REFUSED:
            return "550 5.1.1 <nobody@example.com>: no such user"
        if address == "busy@example.com":
            return "450 4.2.1 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def app_config(mailserver):
    return mailserver.app_config()


def write(app, *addresses: str) -> list[int]:
    with app.app_context():
        messages = [queue_email("test", to, f"Hello {to}", "test", sender="tests") for to in addresses]
        db.session.commit()
        return [m.id for m in messages]


def row(app, message_id: int) -> EmailMessage:
    with app.app_context():
        found = db.session.get(EmailMessage, message_id)
        db.session.expunge_all()
        return found


def attempts_of(app, message_id: int) -> list[JobRun]:
    with app.app_context():
        runs = db.session.scalars(sa.select(JobRun).where(JobRun.task_name == "send_email",
                                                          JobRun.args_summary == str(message_id))).all()
        db.session.expunge_all()
        return runs


def set_row(app, message_id: int, **values) -> None:
    with app.app_context():
        db.session.execute(sa.update(EmailMessage).where(EmailMessage.id == message_id).values(**values))
        db.session.commit()


def test_a_permanent_refusal_fails_at_once_and_a_4xx_is_deferred(app, redis, mailserver):
    mailserver.inbox = PickyInbox()
    mailserver.start()
    refused, busy, fine = write(app, REFUSED, "busy@example.com", "pat@example.com")
    with app.app_context(), pytest.raises(Undeliverable, match="550"):
        send_email.apply((refused,))
    gone = row(app, refused)
    assert (gone.status, gone.attempts, gone.next_attempt_at) == ("failed", 1, None)
    assert "SMTPRecipientsRefused" in gone.last_error and "no such user" in gone.last_error
    assert [r.status for r in attempts_of(app, refused)] == ["failed"]  # no retry: none could deliver it

    with app.app_context(), pytest.raises(Exception, match="450"):
        send_email.apply((busy,))  # the job's own retries (inline, without waiting), then the outbox's
    later = row(app, busy)
    assert (later.status, later.attempts, later.deferrals) == ("pending", 6, 1)
    assert timedelta(seconds=50) < later.next_attempt_at - utcnow() <= timedelta(seconds=60)
    assert "450" in later.last_error

    # In a batch, the refused one fails and the others go on.
    again = write(app, "ann@example.com", REFUSED, "bob@example.com")
    with app.app_context():
        result = send_emails.apply((again,))
    assert (result["sent"], result["failed"], result["handed_off"]) == (2, [again[1]], 0)
    assert row(app, again[1]).status == "failed"
    with app.app_context():
        assert send_email.apply((fine,))["sent"] is True
    assert sorted(m["To"] for m in mailserver.messages) == ["ann@example.com", "bob@example.com", "pat@example.com"]


def test_past_its_deadline_a_message_fails_and_before_it_the_last_try_is_at_the_deadline(app, redis):
    # The SMTP server is down (nothing listens on its port).
    old, close = write(app, "old@example.com", "close@example.com")
    now = utcnow()
    set_row(app, old, delivery_started_at=now - timedelta(hours=24, seconds=1), deferrals=5)
    set_row(app, close, delivery_started_at=now - timedelta(hours=23, minutes=50), deferrals=5)
    with app.app_context():
        for message_id in (old, close):
            with pytest.raises(ConnectionRefusedError):
                send_email.apply((message_id,))
    failed = row(app, old)
    assert failed.status == "failed" and failed.next_attempt_at is None
    assert "not delivered within 24 h" in failed.last_error and "ConnectionRefusedError" in failed.last_error
    waiting = row(app, close)  # an hour's delay would pass its deadline: one last try, then
    assert waiting.status == "pending" and waiting.deferrals == 6
    assert waiting.next_attempt_at == waiting.delivery_started_at + timedelta(hours=24)

    # An admin's retry starts over: a fresh deadline and schedule.
    auth = AuthActions(app.test_client())
    auth.login()
    queued = redis.llen("rq:queue:high")
    assert auth.post(f"/admin/outbox/{old}/retry").status_code == 302
    retried = row(app, old)
    assert (retried.status, retried.deferrals, retried.last_error) == ("pending", 0, None)
    assert utcnow() - retried.delivery_started_at < timedelta(seconds=30)
    assert redis.llen("rq:queue:high") == queued + 1  # with a worker now
    with app.app_context(), pytest.raises(ConnectionRefusedError):
        send_email.apply((old,))
    assert row(app, old).status == "pending"  # deferred again, not failed: its deadline is a day away


def test_a_deferred_message_is_queued_only_when_due_once_and_sent_once(app, procs, redis, mailserver):
    [message_id] = write(app, "pat@example.com")
    redis.delete("rq:queue:high")  # its commit's job: this test plays the worker until it starts one
    with app.app_context(), pytest.raises(ConnectionRefusedError):
        send_email.apply((message_id,))  # SMTP is down: the job's retries, then deferred
    deferred = row(app, message_id)
    assert deferred.status == "pending" and deferred.next_attempt_at > utcnow()
    with app.app_context():
        assert flush_outbox.apply()["queued"] == 0  # not due: nothing queued
    assert redis.llen("rq:queue:high") == 0

    set_row(app, message_id, next_attempt_at=utcnow() - timedelta(seconds=1))  # due now
    results, start = [], threading.Barrier(2)

    def flush() -> None:
        with app.app_context():
            start.wait(10)
            results.append(flush_outbox.apply()["queued"])
    threads = [threading.Thread(target=flush) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 1]  # two flushes at once: one queues it, the other finds it taken
    assert redis.llen("rq:queue:high") == 1

    mailserver.start()
    procs.worker("--concurrency", "2", **mailserver.env())
    wait_for(lambda: row(app, message_id).status == "sent", timeout=30, message="the deferred email sent")
    with app.app_context():
        assert flush_outbox.apply()["queued"] == 0
        assert send_email.apply((message_id,))["sent"] is False  # a stray job finds it sent
    assert [m["Message-ID"] for m in mailserver.messages] == [mailserver.messages[0]["Message-ID"]]
    sent = row(app, message_id)
    assert sent.attempts == 7 and sent.next_attempt_at is None


def test_a_waiting_row_whose_job_was_lost_is_queued_again(app, redis):
    pending, retrying = write(app, "a@example.com", "b@example.com")
    long_ago = utcnow() - timedelta(minutes=11)
    set_row(app, pending, next_attempt_at=long_ago, queued_at=long_ago)  # flushed; that job vanished
    set_row(app, retrying, status="retrying", attempts=2, next_attempt_at=long_ago)  # its retry vanished
    with app.app_context():
        assert flush_outbox.apply()["queued"] == 2
        assert flush_outbox.apply()["queued"] == 0
    assert row(app, pending).next_attempt_at > utcnow() + timedelta(minutes=9)


@pytest.mark.parametrize("app_config", [{"TIME_ZONE": "America/Toronto"}])
def test_the_outbox_page_shows_the_next_attempt_and_the_digests_count_deferred_apart(app, ids, client, auth):
    deferred, failed = write(app, "pat@example.com", "sam@example.com")
    when = utcnow().replace(microsecond=0) + timedelta(minutes=5)
    set_row(app, deferred, attempts=7, deferrals=2, next_attempt_at=when,
            last_error="ConnectionRefusedError: [Errno 111] Connection refused")
    set_row(app, failed, status="failed", attempts=1, next_attempt_at=None,
            last_error="SMTPRecipientsRefused: 550 no such user")
    auth.login()
    page = client.get("/admin/outbox").get_data(as_text=True)
    local = show_time(when, "America/Toronto")
    assert "Next attempt" in page and local in page and "deferred 2 times" in page
    assert "Connection refused" in page and "1 min, 5 min, 15 min, 60 min, then every 60 min" in page
    assert re.search(r">deferred \(1\)<", page) and re.search(r">failed \(1\)<", page)
    only = client.get("/admin/outbox?status=deferred").get_data(as_text=True)
    assert "pat@example.com" in only and "sam@example.com" not in only

    with app.app_context():
        from itsm.users.models import User

        admin = db.session.get(User, ids.admin)
        admin.notify_operational = admin.notify_admin_actions = True
        db.session.commit()
        send_daily_digests(utcnow())
        digest, actions = (db.session.scalar(sa.select(EmailMessage).where(EmailMessage.kind == kind))
                           for kind in ("digest_operational", "admin_actions"))
        assert "Emails sent / failed:     0 / 1" in digest.body_text
        assert "Emails deferred now:      1" in digest.body_text
        assert "1 email(s) could not be sent" in actions.body_text  # the failed one only
        assert "1 email(s) deferred" in actions.body_text and "/admin/outbox?status=deferred" in actions.body_text
