"""The attachments' job: delete blobs nothing points at any more."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from itsm.attachments import store
from jobs.task import task


@task(name="cleanup_attachment_blobs", queue="low", autoretry_for=(OperationalError,), retry_backoff=10,
      max_retries=3, time_limit=1800, soft_time_limit=1700)
def cleanup_attachment_blobs() -> dict:
    """Blobs whose last attachment was removed (or whose ticket was deleted) go, with their chunks."""
    return {"deleted": store.delete_unused()}
