"""Jobs an earlier version left in Redis run after an upgrade that moved the code around.

RQ stores the dotted path of the callable (``jobs.runtime.run``) and our arguments (task name, args,
kwargs, and for a periodic firing its tick in the meta) in every queued, scheduled and failed job. The
jobs here are written with RQ's own API exactly as an earlier version wrote them, for tasks whose
modules have since moved (``jobs.housekeeping`` -> ``itsm.housekeeping.tasks``, ``jobs.firing`` ->
``itsm.schedules.firing``), then a worker of this version runs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue
from rq.job import Job

from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.models import ScheduleFiring
from itsm.schedules.validation import Definition
from jobs.models import JobRun
from tests.processes import wait_for

pytestmark = pytest.mark.usefixtures("redis")
OLD_PATH = "jobs.runtime.run"


def statuses(app, job_id: str) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(db.select(JobRun.status).where(JobRun.job_id == job_id)
                                       .order_by(JobRun.attempt)))


def test_queued_scheduled_and_periodic_jobs_of_an_earlier_version_run(app, procs, redis):
    with app.app_context():
        row = service.save(Definition(name="old periodic", task="diagnostics.ping", kind="interval", every=1,
                                      period="hours"))
        db.session.commit()
        task_id = row.id
    tick = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    high, low = Queue("high", connection=redis), Queue("low", connection=redis)
    queued = low.enqueue_call(func=OLD_PATH, args=("archive_done_tickets", [], {}), job_id="old-queued")
    soon = datetime.now(UTC) + timedelta(seconds=1)
    scheduled = high.enqueue_at(soon, OLD_PATH, "diagnostics.ping", [], {}, job_id="old-scheduled")
    periodic = high.enqueue_call(func=OLD_PATH, args=("diagnostics.ping", [], {}), job_id="old-periodic",
                                 meta={"periodic": {"id": task_id, "tick": tick.isoformat()}})
    for job in (queued, scheduled, periodic):
        assert Job.fetch(job.id, connection=redis).func_name == OLD_PATH  # what the earlier version stored

    procs.worker()
    for job_id in ("old-queued", "old-scheduled", "old-periodic"):
        wait_for(lambda j=job_id: statuses(app, j) == ["succeeded"], message=f"{job_id} to succeed once")
    with app.app_context():
        firing = db.session.scalars(db.select(ScheduleFiring).where(ScheduleFiring.periodic_task_id == task_id)).one()
        assert (firing.job_id, firing.status, firing.tick_at) == ("old-periodic", "succeeded", tick)
    assert Job.fetch("old-queued", connection=redis).return_value()["archived"] == 0
