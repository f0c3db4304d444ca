"""The JobRun audit rows when the enqueuer and the worker write in either order."""

from __future__ import annotations

from datetime import timedelta

from itsm.dbtypes import utcnow
from itsm.extensions import db
from jobs import audit
from jobs.models import JobRun


def queued(job_id: str, enqueued) -> dict:
    return {"job_id": job_id, "attempt": 1, "task_name": "t.add", "queue": "default", "args_summary": "1, 2",
            "created_at": enqueued, "enqueued_at": enqueued, "scheduled_for": None}


def test_a_worker_faster_than_the_enqueuer_keeps_its_outcome_and_gets_the_queue_time(app):
    enqueued = utcnow()
    started = enqueued + timedelta(milliseconds=20)
    with app.app_context():
        # The worker took the job from Redis and finished before the enqueuer wrote its queued row.
        audit.record_outcome(audit.row(job_id="fast", attempt=1, task_name="t.add", queue="default",
                                       args_summary="1, 2", status="succeeded", started_at=started,
                                       finished_at=started + timedelta(milliseconds=5), worker="w1", result=3))
        audit.record_enqueued([queued("fast", enqueued)])
        run = db.session.scalar(db.select(JobRun).where(JobRun.job_id == "fast"))
        assert run.status == "succeeded" and run.worker == "w1" and run.result == 3
        assert run.enqueued_at == enqueued
        assert timedelta(0) < run.started_at - run.enqueued_at < timedelta(seconds=1)


def test_the_queue_time_written_first_is_kept(app):
    first = utcnow()
    with app.app_context():
        audit.record_enqueued([queued("twice", first)])
        audit.record_enqueued([queued("twice", first + timedelta(seconds=30))])
        run = db.session.scalar(db.select(JobRun).where(JobRun.job_id == "twice"))
        assert run.status == "queued" and run.enqueued_at == first
