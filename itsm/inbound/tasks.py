"""The inbound channel's job: fetch every enabled mailbox."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from itsm.extensions import db
from itsm.inbound import imap
from itsm.inbound.models import Mailbox
from jobs.task import task


@task(name="fetch_mail", queue="default", autoretry_for=(OperationalError,), retry_backoff=10, max_retries=2,
      time_limit=600, soft_time_limit=540)
def fetch_mail() -> dict:
    """Each enabled mailbox in turn; one that cannot be reached is recorded on it and does not stop the others."""
    results = {}
    for box in db.session.scalars(select(Mailbox).where(Mailbox.enabled.is_(True)).order_by(Mailbox.id)).all():
        report = imap.fetch(box)
        results[box.name] = {"fetched": report.fetched, **report.outcomes, **({"error": report.error}
                                                                            if report.error else {})}
    return results
