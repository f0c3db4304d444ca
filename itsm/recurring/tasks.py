"""The recurring-ticket job: open whatever recurring templates owe, every few minutes."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from itsm.recurring import runs
from jobs.task import task


@task(name="process_recurring_tickets", queue="default", autoretry_for=(OperationalError,), retry_backoff=5,
      retry_backoff_max=120, max_retries=5, time_limit=900, soft_time_limit=840)
def process_recurring_tickets() -> dict:
    """Safe to retry or run twice at once: occurrences are unique per (template, time)."""
    run_id, totals = runs.run(trigger="job", job_id=process_recurring_tickets.request.id)
    return {"run": run_id, "processed": totals.processed, "created": totals.created, "skipped": totals.skipped,
            "missed": totals.missed, "ended": totals.ended}
