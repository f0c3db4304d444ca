"""/admin/automation: recent runs, filters, a run's detail with its error, failures in 24 h."""

from __future__ import annotations

from datetime import timedelta

import pytest

from itsm.dbtypes import utcnow
from itsm.extensions import db
from jobs.models import JobRun
from tests import jobtasks

pytestmark = pytest.mark.usefixtures("redis")


def add_run(**values) -> int:
    now = utcnow()
    row = JobRun(job_id=values.pop("job_id", f"job-{now.timestamp()}"), attempt=values.pop("attempt", 1),
                 task_name=values.pop("task_name", "t.add"), queue="default", status=values.pop("status", "succeeded"),
                 created_at=values.pop("created_at", now), enqueued_at=now, **values)
    db.session.add(row)
    db.session.commit()
    return row.id


def test_runs_list_filters_and_failure_count(app, client, auth):
    with app.app_context():
        add_run(job_id="a1", status="succeeded", duration_seconds=0.25)
        add_run(job_id="b1", task_name="t.flaky", status="failed", error_type="Flaky", error_message="call 1 fails")
        add_run(job_id="c1", task_name="t.flaky", status="lost", created_at=utcnow() - timedelta(hours=30))
    auth.login()
    page = client.get("/admin/automation").get_data(as_text=True)
    assert "1</strong> failed or lost run in the last 24 hours" in page
    assert "t.flaky" in page and "call 1 fails" in page and "0.250 s" in page
    only_failed = client.get("/admin/automation?status=failed").get_data(as_text=True)
    assert '<td class="mono">b1</td>' in only_failed and '<td class="mono">a1</td>' not in only_failed
    by_task = client.get("/admin/automation?task=t.add").get_data(as_text=True)
    assert "t.flaky" not in by_task.split("Job runs</h2>")[1].split("<table")[1]


@pytest.mark.parametrize("query", ["?status=exploded", "?task=<script>", "?page=0", "?page=abc"])
def test_bad_filters_are_400(client, auth, query):
    auth.login()
    assert client.get("/admin/automation" + query).status_code == 400


def test_run_detail_shows_error_and_attempts(app, client, auth):
    with app.app_context():
        jobtasks.flaky.apply(("calls", 1), job_id="detail-job")
        first = db.session.scalar(db.select(JobRun.id).where(JobRun.job_id == "detail-job", JobRun.attempt == 1))
    auth.login()
    page = client.get(f"/admin/automation/runs/{first}").get_data(as_text=True)
    assert "Flaky" in page and "call 1 fails" in page and "Traceback" in page
    assert page.count('class="badge run-') >= 3  # the run's own badge and both attempts
    assert client.get("/admin/automation/runs/999999").status_code == 404


def test_run_again_enqueues_a_new_job(app, client, auth, redis):
    with app.app_context():
        handle = jobtasks.add.delay(4, 5)
        run_id = db.session.scalar(db.select(JobRun.id).where(JobRun.job_id == handle.id))
    auth.login()
    response = auth.post(f"/admin/automation/runs/{run_id}/run-again", follow_redirects=True)
    assert "enqueued again" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(JobRun).where(JobRun.task_name == "t.add")) == 2


def test_pages_work_while_redis_is_down(app, client, auth, ids):
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    with app.app_context():
        run_id = add_run(job_id="down-1")
    auth.login()
    for url in ("/board", "/tickets", "/admin/automation", f"/admin/automation/runs/{run_id}", "/admin/users"):
        assert client.get(url).status_code == 200, url
    response = auth.post(f"/admin/automation/runs/{run_id}/run-again", follow_redirects=True)
    assert response.status_code == 200
    assert "Redis at redis://127.0.0.1:1/0 is unreachable" in response.get_data(as_text=True)
