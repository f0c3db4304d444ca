"""Email jobs: send one outbox row (Celery-style retries), send a batch of rows, and flush whatever
is due.

One row goes to ``send_email``. Several rows written together (one commit, one flush pass) go to
``send_emails`` in chunks of up to BATCH_SIZE: one job for the chunk and one durable claim per
CLAIM_GROUP rows, instead of a job and a durable claim per message. A batch never retries a message
itself: on the first transient error it hands every row it has not sent to ``send_email``, each
with its own full retry schedule.

Those retries last seconds; an outage lasts longer. The outbox is the delivery queue: when
``send_email`` has spent its retries on a transient failure, the row goes back to pending with a
next attempt (MAIL_RETRY_DELAYS), and ``flush_outbox`` queues it again when it is due, until
MAIL_DELIVERY_DEADLINE_HOURS have passed. A permanent refusal (a 5xx for the message) fails at once.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib

from flask import current_app
from rq.timeouts import BaseTimeoutException

from itsm.dbtypes import utcnow
from itsm.mail import delivery, sending
from itsm.mail.outbox import queue_sends
from jobs.exceptions import SoftTimeLimitExceeded
from jobs.task import task

log = logging.getLogger(__name__)
RETRYABLE = (smtplib.SMTPException, ConnectionError, TimeoutError, OSError)
# Rows claimed at a time within a batch. A claim is a durable commit, so fewer claims are cheaper; but a
# worker that dies mid-batch leaves its claimed, unsent rows "sending", and those end up failed (for an
# admin to retry) rather than sent blindly a second time: a small group keeps that to a few rows.
CLAIM_GROUP = 10


def _stops_the_batch(err: BaseException) -> bool:
    """A time limit ends the batch: what is left goes to send_email."""
    return isinstance(err, SoftTimeLimitExceeded | BaseTimeoutException)


def _failed_for_good(task_name: str, job_id: str, exc: BaseException, args, kwargs) -> None:
    """The job's retries are spent: its row (if the job left it waiting) is the outbox's to try later."""
    if args:
        sending.defer(int(args[0]), exc)


@task(name="send_email", queue="high", autoretry_for=RETRYABLE, retry_backoff=True, retry_backoff_max=600,
      retry_jitter=True, max_retries=5, time_limit=120, on_failure=_failed_for_good)
def send_email(message_id: int) -> dict:
    """Send one outbox row, at most once: the row is claimed atomically first. A transient failure is
    retried; a permanent refusal fails the row at once (Undeliverable is not retried)."""
    row = sending.claim(message_id, send_email.request.id)
    if row is None:
        return {"message": message_id, "sent": False, "reason": "already sent, being sent or failed"}
    try:
        sending.deliver(row)
    except RETRYABLE as err:
        if delivery.is_permanent(err):
            sending.mark_failed(message_id, err)
            raise delivery.Undeliverable(sending.describe(err)) from err
        sending.mark_retrying(message_id, err)
        raise
    except Exception as err:  # a bad setting or template: no retry will fix it, fail visibly now
        sending.mark_failed(message_id, err)
        raise
    sending.mark_sent(message_id, row.ticket_id)
    return {"message": message_id, "sent": True, "attempt": row.attempts}


class _Batch:
    """One run of send_emails: which rows are claimed and untried, in flight, sent or handed off."""

    def __init__(self, ids: list[int], job_id: str | None) -> None:
        self.todo = list(dict.fromkeys(int(i) for i in ids))  # not claimed yet
        self.job_id = job_id
        self.untried: list = []  # claimed by this run, not tried yet
        self.in_flight = None  # the row being delivered
        self.delivered = False  # ... and the server accepted it (its mark may not be written yet)
        self.sent: list[int] = []
        self.failed: list[int] = []
        self.skipped = 0
        self.retry_first: int | None = None  # the row whose attempt failed and now waits for its retry
        self.handed_off: list[int] = []
        self.error: str | None = None

    def run(self) -> None:
        while self.todo:
            group, self.todo = self.todo[:CLAIM_GROUP], self.todo[CLAIM_GROUP:]
            try:
                self.untried = sending.claim_many(group, self.job_id)
            except BaseException:
                self.todo = group + self.todo  # whatever it did take stays "sending": never sent twice
                raise
            self.skipped += len(group) - len(self.untried)
            while self.untried:
                row = self.in_flight = self.untried.pop(0)
                self.delivered = False
                try:
                    sending.deliver(row)
                except RETRYABLE as err:
                    if delivery.is_permanent(err):  # refused for good: this row fails, the others go on
                        sending.mark_failed(row.id, err)
                        self.in_flight = None
                        self.failed.append(row.id)
                        continue
                    # The server or the network: stop, every unsent row retries on its own.
                    sending.mark_retrying(row.id, err)
                    self.in_flight, self.retry_first, self.error = None, row.id, sending.describe(err)
                    return
                except Exception as err:  # a bad setting or message: no retry will fix it, fail visibly now
                    sending.mark_failed(row.id, err)
                    self.in_flight = None
                    self.failed.append(row.id)
                    if _stops_the_batch(err):
                        self.error = sending.describe(err)
                        return
                    continue
                self.delivered = True
                sending.mark_sent(row.id, row.ticket_id)
                self.in_flight = None
                self.sent.append(row.id)

    def settle_interrupted(self, err: BaseException) -> None:
        """After something unexpected (a time limit, the database): the row in flight is marked for what is
        known of it, the untried ones go back, and everything unsent is handed off."""
        self.error = self.error or sending.describe(err)
        row, self.in_flight = self.in_flight, None
        if row is not None:
            with contextlib.suppress(Exception):
                if self.delivered:
                    sending.mark_sent(row.id, row.ticket_id)  # the server has it
                    self.sent.append(row.id)
                else:  # it may or may not have gone out: failed, for an admin to look at
                    sending.mark_failed(row.id, err)
                    self.failed.append(row.id)

    def hand_off(self) -> None:
        """Untried rows back to their earlier status, then a send_email job for each unsent row (the failed
        one after its first retry delay). Rows whose job cannot be queued wait for flush_outbox."""
        released = [r.id for r in self.untried]
        if self.untried:
            sending.release(self.untried, self.job_id)
            self.untried = []
        rest = released + self.todo
        self.todo = []
        try:
            if self.retry_first is not None:
                send_email.apply_async((self.retry_first,), countdown=send_email.autoretry_countdown(0))
                self.handed_off.append(self.retry_first)
            if rest:
                send_email.apply_many([((i,), {}) for i in rest])
                self.handed_off += rest
        except Exception:
            if current_app.config["JOBS_EAGER"]:  # the inline send failed: its row says so; the rest are pending
                log.exception("sending inline after a failed batch")
                return
            sending.pending_again([self.retry_first] if self.retry_first is not None else [])
            raise

    def summary(self) -> dict:
        result = {"sent": len(self.sent), "skipped": self.skipped, "failed": self.failed,
                  "handed_off": len(self.handed_off)}
        if self.error:
            result["error"] = self.error
        return result


@task(name="send_emails", queue="high", max_retries=2, time_limit=300, soft_time_limit=240)
def send_emails(message_ids: list[int]) -> dict:
    """Send several outbox rows, each at most once. Rows are claimed CLAIM_GROUP at a time (rows already
    sent, being sent or failed are skipped), each is marked sent right after the server takes it, and
    the first retryable error hands every unsent row to ``send_email``. If the worker dies, late
    acknowledgement runs the job again: the rows it had not claimed yet are sent then."""
    batch = _Batch(message_ids, send_emails.request.id)
    try:
        batch.run()
    except Exception as err:
        # A time limit, the database or a bug: nothing may be lost and this must not fail over and over
        # (a failed job mails the admins): what is unsent goes to send_email, whose failures are quiet.
        log.warning("batch stopped (%s); handing the unsent rows to send_email", err,
                    exc_info=not _stops_the_batch(err))
        batch.settle_interrupted(err)
    batch.hand_off()
    return batch.summary()


@task(name="flush_outbox", queue="high", max_retries=0, time_limit=300)
def flush_outbox() -> dict:
    """Queue a send for every waiting row whose next attempt is due: a retry the outbox deferred, or a
    row whose job never ran or was lost (e.g. Redis was down at the time). Rows not due stay."""
    now = utcnow()
    stale = sending.settle_stale_sending(now)
    ids = sending.take_due(now)
    if ids:
        try:
            queue_sends(ids)
        except Exception:
            sending.due_again(ids, now)
            raise
    return {"queued": len(ids), "stale_sending_failed": stale}
