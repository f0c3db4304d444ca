"""Outbox rows sent in batches (``send_emails``), with a real SMTP server, real workers and Redis:
every message once, rows taken by another job never sent, SMTP trouble handed to send_email's retries."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail import outbox as mail_outbox
from itsm.mail import sending
from itsm.mail import tasks as mail_jobs
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import queue_email
from itsm.mail.tasks import send_emails
from jobs.exceptions import JobsUnavailableError
from jobs.models import JobRun
from tests.mailserver import _Inbox
from tests.processes import wait_for


@pytest.fixture
def app_config(mailserver):
    return mailserver.app_config()


class GatedInbox(_Inbox):
    """Accepts ``accept`` messages, then answers 421 (the server going away) until ``down`` is cleared;
    or, with ``hold_at``, keeps that message's DATA waiting until ``release`` is set."""

    def __init__(self, accept: int | None = None, hold_at: int | None = None) -> None:
        super().__init__()
        self.accept, self.hold_at = accept, hold_at
        self.down = False
        self.refused = 0
        self.seen = 0
        self.holding, self.release = threading.Event(), threading.Event()
        self.on_data = None  # called with the envelope before it is accepted

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 -- aiosmtpd's hook name
        self.seen += 1
        if self.accept is not None and len(self.messages) >= self.accept and not self.down and self.refused == 0:
            self.down = True  # from this message on, until the test brings it back
        if self.down:
            self.refused += 1
            return "421 4.3.2 Service not available, try again later"
        if self.hold_at is not None and self.seen == self.hold_at:
            self.holding.set()
            self.release.wait(30)  # the worker dies while its message sits here
        if self.on_data is not None:
            self.on_data(envelope)
        return await super().handle_DATA(server, session, envelope)


def outbox() -> list[EmailMessage]:
    db.session.expire_all()
    return db.session.scalars(sa.select(EmailMessage).order_by(EmailMessage.id)).all()


def write_emails(app, count: int, prefix: str = "Batch") -> list[int]:
    """``count`` emails in one commit (which queues their send jobs); their row ids."""
    with app.app_context():
        before = {m.id for m in outbox()}
        for i in range(count):
            queue_email("test", f"user{i}@example.com", f"{prefix} {i}", "test", sender="tests")
        db.session.commit()
        return [m.id for m in outbox() if m.id not in before]


def rows(app, ids: list[int]) -> dict[int, EmailMessage]:
    with app.app_context():
        found = {m.id: m for m in outbox() if m.id in ids}
        db.session.expunge_all()
        return found


def all_sent(app, ids: list[int]) -> bool:
    return all(m.status == "sent" for m in rows(app, ids).values()) and len(rows(app, ids)) == len(ids)


def job_runs(app, task_name: str) -> list[JobRun]:
    with app.app_context():
        found = db.session.scalars(sa.select(JobRun).where(JobRun.task_name == task_name)
                                   .order_by(JobRun.id)).all()
        db.session.expunge_all()
        return found


def outbox_ids(server) -> list[int]:
    """The outbox row of each message the server holds, from its stable Message-ID."""
    return [int(m["Message-ID"].split("@")[0].removeprefix("<itsm-outbox-").split(".")[0]) for m in server.messages]


def test_chunks_are_even_and_never_a_single_row():
    assert mail_outbox.chunks([]) == []
    assert mail_outbox.chunks([1, 2], size=50) == [[1, 2]]
    for n in (2, 3, 49, 50, 51, 99, 100, 101, 1000, 1001):
        parts = mail_outbox.chunks(list(range(n)), size=50)
        assert [i for part in parts for i in part] == list(range(n))  # every id once, in order
        assert len(parts) == -(-n // 50) and all(2 <= len(p) <= 50 for p in parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_multi_row_commit_is_sent_by_batch_jobs_each_message_once(app, procs, redis, mailserver):
    mailserver.start()
    ids = write_emails(app, 2 * mail_outbox.BATCH_SIZE + 7)
    [single] = write_emails(app, 1, prefix="Alone")  # one row keeps its own send_email job
    batches = job_runs(app, "send_emails")
    assert [r.status for r in batches] == ["queued"] * 3
    assert sorted(i for r in batches for i in json.loads(r.args_summary)) == ids
    assert [(r.status, r.args_summary) for r in job_runs(app, "send_email")] == [("queued", str(single))]

    procs.worker("--concurrency", "2", **mailserver.env())
    wait_for(lambda: len(mailserver.messages) == len(ids) + 1, timeout=60, message="every message at the server")
    wait_for(lambda: all_sent(app, ids + [single]), timeout=20, message="every row marked sent")
    assert sorted(outbox_ids(mailserver)) == sorted(ids + [single])  # each exactly once
    assert all(m.attempts == 1 and m.sent_at is not None for m in rows(app, ids).values())
    wait_for(lambda: len([r for r in job_runs(app, "send_emails") if r.status == "succeeded"]) == 3,
             timeout=20, message="three batch jobs succeeded")
    done = [r for r in job_runs(app, "send_emails") if r.status == "succeeded"]
    assert sum(r.result["sent"] for r in done) == len(ids)
    assert not [r for r in job_runs(app, "send_email") if r.args_summary != str(single)]  # nothing handed off

    with app.app_context():  # the same batch again (a duplicate job) finds every row sent
        assert send_emails.apply((ids,)) == {"sent": 0, "skipped": len(ids), "failed": [], "handed_off": 0}
    assert len(mailserver.messages) == len(ids) + 1


def test_a_batch_sends_only_the_rows_it_can_claim(app, redis, mailserver):
    mailserver.start()
    ids = write_emails(app, 6)
    sent_at = utcnow() - timedelta(hours=1)
    with app.app_context():
        table = EmailMessage.__table__
        db.session.execute(sa.update(table).where(table.c.id == ids[1]).values(status="sent", attempts=1,
                                                                             sent_at=sent_at))
        # Taken a moment ago by a job that is sending it right now: never a second copy.
        db.session.execute(sa.update(table).where(table.c.id == ids[2]).values(
            status="sending", attempts=1, job_id="other-job", claimed_at=utcnow()))
        db.session.execute(sa.update(table).where(table.c.id == ids[3]).values(status="failed", attempts=6,
                                                                             last_error="gone"))
        db.session.execute(sa.update(table).where(table.c.id == ids[4]).values(status="retrying", attempts=2,
                                                                             last_error="421 later"))
        db.session.commit()
        result = send_emails.apply((ids,))
    assert result == {"sent": 3, "skipped": 3, "failed": [], "handed_off": 0}
    assert sorted(outbox_ids(mailserver)) == [ids[0], ids[4], ids[5]]
    after = rows(app, ids)
    assert [after[i].status for i in ids] == ["sent", "sent", "sending", "failed", "sent", "sent"]
    assert (after[ids[2]].job_id, after[ids[2]].attempts) == ("other-job", 1)  # untouched
    assert after[ids[1]].sent_at == sent_at and after[ids[4]].attempts == 3 and after[ids[4]].last_error is None
    with app.app_context():  # run again: nothing left to send
        assert send_emails.apply((ids,))["sent"] == 0
    assert len(mailserver.messages) == 3


def test_each_claim_is_committed_before_its_messages_leave_and_covers_a_small_group(app, redis, mailserver,
                                                                                     database_url):
    """What another connection sees while each message is at the server: its row committed as
    "sending", the rows before it sent, the rows past its claim group still pending."""
    inbox = mailserver.inbox = GatedInbox()
    mailserver.start()
    count = mail_jobs.CLAIM_GROUP + 3
    ids = write_emails(app, count)
    observer = sa.create_engine(database_url)
    seen: dict[int, list[str]] = {}

    def look(envelope) -> None:
        row_id = int(envelope.content.split(b"Message-ID: <itsm-outbox-")[1].split(b"@")[0].split(b".")[0])
        with observer.connect() as conn:
            statuses = dict(conn.execute(sa.select(EmailMessage.id, EmailMessage.status)
                                         .where(EmailMessage.id.in_(ids))).all())
        seen[row_id] = [statuses[i] for i in ids]

    inbox.on_data = look
    try:
        with app.app_context():
            assert send_emails.apply((ids,))["sent"] == count
    finally:
        observer.dispose()
    group = mail_jobs.CLAIM_GROUP
    for n, row_id in enumerate(ids):
        group_end = (n // group + 1) * group
        expected = ["sent"] * n + ["sending"] * (min(group_end, count) - n) + ["pending"] * max(0, count - group_end)
        assert seen[row_id] == expected, f"message {n}"


def test_smtp_trouble_mid_batch_hands_every_unsent_row_to_send_email(app, procs, redis, mailserver):
    inbox = mailserver.inbox = GatedInbox(accept=3)  # three go through, then the server is unavailable
    mailserver.start()
    ids = write_emails(app, 12)
    procs.worker(**mailserver.env())
    failed_row, untried = ids[3], ids[4:]

    def each_unsent_row_retrying() -> bool:
        return set(ids[3:]) <= {int(r.args_summary) for r in job_runs(app, "send_email") if r.status == "retrying"}

    wait_for(each_unsent_row_retrying, timeout=30, message="a failed send_email attempt for every unsent row")
    [batch] = job_runs(app, "send_emails")
    assert batch.status == "succeeded" and batch.result["sent"] == 3 and batch.result["handed_off"] == 9
    assert "421" in batch.result["error"]
    assert sorted(outbox_ids(mailserver)) == ids[:3]
    inbox.down = False  # the server is back
    wait_for(lambda: len(mailserver.messages) == len(ids), timeout=60, message="every message once SMTP is up")
    wait_for(lambda: all_sent(app, ids), timeout=20, message="every row marked sent")
    assert sorted(outbox_ids(mailserver)) == ids  # each exactly once
    wait_for(lambda: {int(r.args_summary) for r in job_runs(app, "send_email") if r.status == "succeeded"}
             == set(ids[3:]), timeout=20, message="the last send_email attempts in the audit")
    after = rows(app, ids)
    send_runs = [r for r in job_runs(app, "send_email") if r.status in ("retrying", "succeeded")]
    tries = {i: len([r for r in send_runs if r.args_summary == str(i)]) for i in ids}
    assert all(after[i].attempts == 1 and tries[i] == 0 for i in ids[:3])
    # The row that failed in the batch counts that attempt; the ones it never tried count only their own.
    assert after[failed_row].attempts == 1 + tries[failed_row] >= 3
    assert all(after[i].attempts == tries[i] >= 2 for i in untried)
    assert inbox.refused == sum(after[i].attempts for i in ids[3:]) - len(ids[3:])


def test_a_worker_dying_mid_batch_never_sends_twice(app, procs, redis, mailserver):
    """SIGKILL while a message is at the server: the rerun (late acknowledgement) sends the rows it had not
    claimed; its claimed rows stay "sending" until settle_stale_sending fails them for an admin."""
    group = mail_jobs.CLAIM_GROUP
    inbox = mailserver.inbox = GatedInbox(hold_at=3)
    mailserver.start()
    ids = write_emails(app, group + 4)
    first = procs.worker(**mailserver.env())
    wait_for(inbox.holding.is_set, timeout=30, message="the third message at the server")
    procs.kill(first)  # the worker dies while the server has the message
    inbox.release.set()  # the server keeps it: it was delivered, but nobody marked it
    procs.worker(**mailserver.env())
    wait_for(lambda: all_sent(app, ids[group:]), timeout=60, message="the rows the first run never claimed")
    wait_for(lambda: [r.status for r in job_runs(app, "send_emails")] == ["lost", "succeeded"], timeout=20,
             message="the batch lost, then run again")
    assert sorted(outbox_ids(mailserver)) == ids[:3] + ids[group:]  # nothing twice
    after = rows(app, ids)
    assert [after[i].status for i in ids[:2]] == ["sent", "sent"]
    assert all(after[i].status == "sending" for i in ids[2:group])  # the uncertain one and its group
    with app.app_context():
        assert sending.settle_stale_sending(utcnow() + sending.STALE_SENDING) == group - 2
    after = rows(app, ids)
    assert all(after[i].status == "failed" and "may or may not" in after[i].last_error for i in ids[2:group])


def test_a_message_no_retry_can_fix_fails_visibly_and_the_batch_goes_on(app, redis, mailserver):
    mailserver.start()
    ids = write_emails(app, 3)
    with app.app_context():
        table = EmailMessage.__table__
        db.session.execute(sa.update(table).where(table.c.id == ids[1]).values(subject="Hi\nBcc: x@example.com"))
        db.session.commit()
        assert send_emails.apply((ids,)) == {"sent": 2, "skipped": 0, "failed": [ids[1]], "handed_off": 0}
    assert sorted(outbox_ids(mailserver)) == [ids[0], ids[2]]
    bad = rows(app, ids)[ids[1]]
    assert bad.status == "failed" and bad.attempts == 1 and bad.last_error.startswith("BadHeaderError")


def test_with_redis_down_too_the_unsent_rows_wait_for_the_flush(app, redis, mailserver):
    ids = write_emails(app, 4)  # the SMTP server is not started: connections are refused
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # and the retry jobs cannot be queued
    app.extensions.pop("itsm_redis", None)
    with app.app_context(), pytest.raises(JobsUnavailableError):
        send_emails.apply((ids,))
    after = rows(app, ids)
    assert [(after[i].status, after[i].attempts) for i in ids] == [("pending", 1)] + [("pending", 0)] * 3
    assert after[ids[0]].last_error.startswith("ConnectionRefusedError")
    with app.app_context():  # due at the next flush, or a minute on for the untried ones
        assert ids[0] in sending.due_for_flush(utcnow())
        assert set(ids) <= set(sending.due_for_flush(utcnow() + timedelta(minutes=2)))


@pytest.mark.parametrize("app_config", [{"JOBS_EAGER": True, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": 1,
                                          "MAIL_DEFAULT_SENDER": "desk@example.com"}])
def test_eager_mode_with_smtp_down_keeps_the_commit_and_every_row(app):
    ids = write_emails(app, 3)  # sent inline at the commit, which must not fail because of it
    after = rows(app, ids)
    first = after[ids[0]]
    assert first.attempts == 1 + 6  # the batch, then send_email's
    # Deferred, not failed: the outbox tries it again a minute on.
    assert (first.status, first.deferrals) == ("pending", 1) and first.next_attempt_at > utcnow()
    assert [(after[i].status, after[i].attempts) for i in ids[1:]] == [("pending", 0)] * 2  # for flush_outbox
    assert job_runs(app, "send_emails")[-1].status == "succeeded"
