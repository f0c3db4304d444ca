"""Every log line a job writes names the job: a real worker process, its log read back."""

from __future__ import annotations

import sqlalchemy as sa

from itsm.extensions import db
from jobs.models import JobRun
from tests.processes import wait_for


def test_worker_log_lines_carry_task_name_and_job_id(app, procs, redis):
    from tests.jobtasks import add

    worker = procs.worker(LOG_LEVEL="INFO")
    with app.app_context():
        handle = add.delay(2, 3)
    wait_for(lambda: f"[t.add {handle.id}]" in procs.logs(), timeout=30, message="the job's log line")
    lines = [line for line in procs.logs().splitlines() if handle.id in line]
    assert lines and all(f"[t.add {handle.id}]" in line for line in lines)
    assert len([line for line in lines if "succeeded" in line]) == 1, lines  # one line for the outcome
    assert worker.poll() is None


def test_production_workers_keep_quiet_about_success(app, procs, redis):
    from tests.jobtasks import add

    procs.worker(ITSM_ENV="production", SECRET_KEY="x" * 32)
    with app.app_context():
        handle = add.delay(2, 3)

        def finished():
            db.session.rollback()
            return db.session.scalar(sa.select(JobRun.status).where(JobRun.job_id == handle.id)) == "succeeded"

        wait_for(finished, timeout=30, message="the job to succeed")
    assert handle.id not in procs.logs()
