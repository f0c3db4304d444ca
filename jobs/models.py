"""The audit of background work: one JobRun row per attempt of a job."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Index, UniqueConstraint, text

from itsm.dbtypes import UTCDateTime, one_of, utcnow
from itsm.extensions import db

RUN_STATUSES = ("queued", "running", "succeeded", "retrying", "failed", "lost", "skipped")
FINAL_STATUSES = ("succeeded", "failed", "lost", "skipped")


class JobRun(db.Model):
    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt", name="uq_job_runs_job_attempt"),
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        Index("ix_job_runs_created", "created_at", "id"),
        Index("ix_job_runs_task_created", "task_name", "created_at", "id"),
        Index("ix_job_runs_status_created", "status", "created_at", "id"),
        # Only the rows waiting to run: the lost-job pass (jobs.recovery) reads them in bounded ranges.
        Index("ix_job_runs_queued", "created_at", "id", postgresql_where=text("status = 'queued'"),
              sqlite_where=text("status = 'queued'")),
    )

    id = db.Column(db.Integer, primary_key=True)
    job_id = db.Column(db.String(64), nullable=False)
    attempt = db.Column(db.Integer, nullable=False, default=1)
    task_name = db.Column(db.String(200), nullable=False)
    queue = db.Column(db.String(40), nullable=False)
    args_summary = db.Column(db.String(500), nullable=False, default="")
    status = db.Column(db.String(16), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    enqueued_at = db.Column(UTCDateTime, nullable=True)
    scheduled_for = db.Column(UTCDateTime, nullable=True)
    started_at = db.Column(UTCDateTime, nullable=True)
    finished_at = db.Column(UTCDateTime, nullable=True)
    duration_seconds = db.Column(db.Float, nullable=True)
    worker = db.Column(db.String(200), nullable=True)
    error_type = db.Column(db.String(200), nullable=True)
    error_message = db.Column(db.Text, nullable=True)
    traceback = db.Column(db.Text, nullable=True)
    result = db.Column(db.JSON, nullable=True)
    # What a queued attempt needs to be enqueued again if Redis loses it (jobs.recovery): the call
    # ({"args": [...], "kwargs": {...}}, and a periodic firing's tick), its retries so far, and when it was.
    payload = db.Column(db.JSON, nullable=True)
    retries = db.Column(db.Integer, nullable=True)
    requeued_at = db.Column(UTCDateTime, nullable=True)

    @property
    def short_id(self) -> str:
        return self.job_id[:8]
