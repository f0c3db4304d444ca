"""A processing pass with its audit row: RecurringTicketRun records every pass, good or bad."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, insert, update

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.recurring.models import RecurringTicketRun
from itsm.recurring.processor import BATCH_SIZE, Totals, process_due

runs = RecurringTicketRun.__table__


def run(*, trigger: str = "job", job_id: str | None = None, now: datetime | None = None,
        batch_size: int = BATCH_SIZE, progress: Callable[[Totals], None] | None = None) -> tuple[int, Totals]:
    """Process everything due and record the pass; an error is recorded, then raised again. The counts
    are written with each batch's commit, so a pass that fails (or whose connection dies) midway still
    says what it committed."""
    started = utcnow()
    clock = time.perf_counter()
    with db.engine.begin() as conn:
        run_id = conn.execute(insert(runs).values(started_at=started, status="running", trigger=trigger,
                                                  job_id=job_id).returning(runs.c.id)).scalar_one()
    try:
        totals = process_due(now, batch_size=batch_size, progress=progress, run_id=run_id)
    except Exception as err:
        _finish(run_id, clock, status="error", error_message=f"{type(err).__name__}: {err}"[:2000])
        raise
    _finish(run_id, clock, status="success", total_processed=totals.processed, total_created=totals.created,
            total_skipped=totals.skipped, missed=totals.missed, ended=totals.ended)
    return run_id, totals


def _finish(run_id: int, clock: float, **values) -> None:
    finished = utcnow()
    keep_days = current_app.config["JOB_RUN_RETENTION_DAYS"]
    with db.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            finished_at=finished, duration_seconds=round(time.perf_counter() - clock, 4), **values))
        # Passes run every few minutes: keep the audit as long as the job runs' audit, no longer.
        conn.execute(delete(runs).where(runs.c.started_at < finished - timedelta(days=keep_days)))
