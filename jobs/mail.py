"""Email jobs: send one outbox row (Celery-style retries), and flush whatever was left pending."""

from __future__ import annotations

import smtplib

from jobs.task import task

RETRYABLE = (smtplib.SMTPException, ConnectionError, TimeoutError, OSError)


def _failed_for_good(task_name: str, job_id: str, exc: BaseException, args, kwargs) -> None:
    from itsm.mail import sending

    if args:
        sending.mark_failed(int(args[0]), exc)


@task(name="send_email", queue="high", autoretry_for=RETRYABLE, retry_backoff=True, retry_backoff_max=600,
      retry_jitter=True, max_retries=5, time_limit=120, on_failure=_failed_for_good)
def send_email(message_id: int) -> dict:
    """Send one outbox row, at most once: the row is claimed atomically first."""
    from itsm.mail import sending

    row = sending.claim(message_id, send_email.request.id)
    if row is None:
        return {"message": message_id, "sent": False, "reason": "already sent, being sent or failed"}
    try:
        sending.deliver(row)
    except RETRYABLE as err:
        sending.mark_retrying(message_id, err)
        raise
    except Exception as err:  # a bad setting or template: no retry will fix it, fail visibly now
        sending.mark_failed(message_id, err)
        raise
    sending.mark_sent(message_id)
    return {"message": message_id, "sent": True, "attempt": row.attempts}


@task(name="flush_outbox", queue="high", max_retries=0, time_limit=300)
def flush_outbox() -> dict:
    """Queue a send for every pending row whose job never ran (e.g. Redis was down at the time)."""
    from itsm.dbtypes import utcnow
    from itsm.mail import sending

    now = utcnow()
    stale = sending.settle_stale_sending(now)
    ids = sending.due_for_flush(now)
    if ids:
        send_email.apply_many([((i,), {}) for i in ids])
        sending.mark_queued(ids, now)
    return {"queued": len(ids), "stale_sending_failed": stale}
