"""/admin/automation as the one place an admin looks: task states, 7-day figures, failures, queues,
workers, the outbox and backups."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.automation import dashboard
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.schedules.models import PeriodicTask
from jobs.models import JobRun
from tests.conftest import DEAD_REDIS


def run(task: str, status: str, duration: float, age: timedelta, n: int) -> None:
    finished = utcnow() - age
    started = finished - timedelta(seconds=duration)
    db.session.add(JobRun(job_id=f"{task}-{n}", task_name=task, queue="default", status=status,
                          created_at=started, started_at=started,
                          finished_at=finished, duration_seconds=duration,
                          error_type="BoomError" if status != "succeeded" else None,
                          error_message="disk full" if status != "succeeded" else None))


def row_of(page: str, name: str) -> str:
    return re.search(rf"<tr class=\"state-\w+\">\s*<td><a [^>]+>{re.escape(name)}</a>.*?</tr>", page, re.S).group(0)


@pytest.fixture
def synced(app, runner):
    assert runner.invoke(args=["schedules", "sync"]).exit_code == 0
    with app.app_context():
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=utcnow()))
        db.session.commit()


def test_states_figures_and_failures(app, client, auth, synced, redis):
    with app.app_context():
        for i, d in enumerate((1.0, 2.0, 3.0, 4.0)):  # the newest one failed
            run("process_recurring_tickets", "succeeded" if i < 3 else "failed", d, timedelta(hours=10 - i), i)
        run("process_recurring_tickets", "succeeded", 50.0, timedelta(days=9), 9)  # older than the week
        for i, d in enumerate((0.2, 0.4, 0.3)):
            run("archive_done_tickets", "succeeded", d, timedelta(hours=5 - i), i)
        ping = db.session.scalar(sa.select(PeriodicTask).where(PeriodicTask.name == "automation-ping"))
        ping.last_run_at = utcnow() - timedelta(hours=3)
        db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.name == "purge-job-runs").values(enabled=False))
        db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.name == "backup-database")
                           .values(last_run_at=None))
        db.session.add(EmailMessage(kind="test", to_address="x@example.com", subject="s", body_text="b",
                                    status="failed", attempts=6))
        db.session.add(EmailMessage(kind="test", to_address="y@example.com", subject="s", body_text="b",
                                    status="pending", attempts=2))  # deferred: tried, to be tried again
        db.session.commit()
        rows = {r.task.name: r for r in dashboard.tasks(utcnow())}
        recurring = rows["process-recurring-tickets"]
        assert (recurring.state, recurring.runs, recurring.succeeded, recurring.median) == ("failing", 4, 3, 2.5)
        assert rows["archive-done-tickets"].median == pytest.approx(0.3)
        assert rows["automation-ping"].state == "late" and rows["purge-job-runs"].state == "disabled"
        # Never run: not "healthy" (nothing has succeeded), and not late (it has not had the chance).
        assert rows["backup-database"].state == "not run yet" and rows["backup-database"].runs == 0
        assert rows["backup-database"].last is None
        assert rows["archive-done-tickets"].state == "healthy"
    auth.login()
    page = client.get("/admin/automation").get_data(as_text=True)
    recurring_row = row_of(page, "process-recurring-tickets")
    assert "failing" in recurring_row and "75.0%" in recurring_row and "2.500 s" in recurring_row
    assert recurring_row.count("<rect") == 5 and 'class="bar error"' in recurring_row  # the duration chart
    assert "late" in row_of(page, "automation-ping") and "disabled" in row_of(page, "purge-job-runs")
    never = re.search(r'<tr class="state-not-run-yet">\s*<td><a [^>]+>backup-database</a>.*?</tr>', page, re.S)
    assert never and '<span class="muted">not run yet</span>' in never.group(0) and "healthy" not in never.group(0)
    failures = page.split('id="failures"')[1].split("</section>")[0]
    assert "BoomError" in failures and "disk full" in failures
    outbox = page.split('id="outbox-status"')[1]
    assert 'href="/admin/outbox?status=failed">1</a>' in outbox and "No backup yet" in outbox
    assert 'href="/admin/outbox?status=deferred">1</a>' in outbox and "<dt>pending</dt><dd>0</dd>" in outbox
    runtime = page.split('id="runtime"')[1].split("</section>")[0]
    assert "not running" in runtime and "No worker is registered" in runtime


@pytest.fixture
def app_config(request):
    return {"REDIS_URL": DEAD_REDIS} if "redis_down" in request.node.name else {}


def test_dashboard_with_redis_down_still_shows(app, client, auth, synced):
    auth.login()
    response = client.get("/admin/automation")
    assert response.status_code == 200
    assert "Redis is unreachable" in response.get_data(as_text=True)


def test_the_runs_count_is_capped(app, client, auth, monkeypatch):
    from itsm.automation import routes

    monkeypatch.setattr(routes, "COUNT_CAP", 3)
    with app.app_context():
        for i in range(5):
            run("t.add", "succeeded", 0.1, timedelta(minutes=i), i)
        db.session.commit()
    auth.login()
    page = client.get("/admin/automation").get_data(as_text=True)
    assert "more than 3 runs" in page
