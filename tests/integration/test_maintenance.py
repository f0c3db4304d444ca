"""Maintenance jobs: stuck runs become lost, old audit rows go, old failed RQ jobs go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from itsm.extensions import db
from jobs.models import JobRun
from jobs.upkeep import clean_failed_registries, mark_stuck_runs_lost, purge_old_runs

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def add_run(job_id: str, task: str, status: str, started: datetime) -> None:
    db.session.add(JobRun(job_id=job_id, task_name=task, queue="default", status=status, created_at=started,
                          started_at=started))
    db.session.commit()


def status_of(job_id: str) -> JobRun:
    db.session.expire_all()
    return db.session.scalar(sa.select(JobRun).where(JobRun.job_id == job_id))


def test_stuck_runs_become_lost_after_twice_their_time_limit(app):
    with app.app_context():
        # diagnostics.ping has a 60 s hard limit; unknown tasks get the default of 30 minutes.
        add_run("ping-stuck", "diagnostics.ping", "running", NOW - timedelta(seconds=121))
        add_run("ping-busy", "diagnostics.ping", "running", NOW - timedelta(seconds=119))
        add_run("gone-task", "retired.task", "running", NOW - timedelta(minutes=61))
        add_run("done", "diagnostics.ping", "succeeded", NOW - timedelta(days=1))
        assert mark_stuck_runs_lost(NOW) == 2
        stuck = status_of("ping-stuck")
        assert stuck.status == "lost" and "twice its time limit of 60 s" in stuck.error_message
        assert stuck.finished_at == NOW and stuck.error_type == "WorkerLost"
        assert status_of("ping-busy").status == "running" and status_of("gone-task").status == "lost"
        assert status_of("done").status == "succeeded"


def test_purge_removes_only_runs_past_the_retention_in_batches(app):
    with app.app_context():
        for i in range(7):
            add_run(f"old-{i}", "t", "succeeded", NOW - timedelta(days=91, minutes=i))
        add_run("recent", "t", "succeeded", NOW - timedelta(days=89))
        assert purge_old_runs(NOW, batch=3) == 7
        assert db.session.scalars(sa.select(JobRun.job_id)).all() == ["recent"]


def test_old_failed_jobs_leave_the_registry(app, redis):
    with app.app_context():
        queue = Queue("default", connection=redis)
        failed = FailedJobRegistry(queue=queue)
        for job_id, ended in (("old", NOW - timedelta(days=100)), ("new", NOW - timedelta(days=1))):
            job = Job.create(func="builtins.print", connection=redis, id=job_id, origin="default")
            job.ended_at = ended.replace(tzinfo=None)
            job.save()
            failed.add(job, ttl=10**7)
        failed.add(Job.create(func="builtins.print", connection=redis, id="vanished", origin="default"), ttl=10**7)
        redis.delete(Job.key_for("vanished"))
        assert clean_failed_registries(NOW) == 2
        assert failed.get_job_ids() == ["new"] and not redis.exists(Job.key_for("old"))
