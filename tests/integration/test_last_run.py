"""One last run per task (its latest attempt, whatever started it) on every page, the CLI and the emails."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
import sqlalchemy as sa

from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.schedules import lastrun
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from itsm.schedules.scheduler import entry_id
from itsm.templating import show_time
from jobs.models import JobRun

pytestmark = pytest.mark.usefixtures("redis")


def task_id(name: str) -> int:
    return db.session.scalar(sa.select(PeriodicTask.id).where(PeriodicTask.name == name))


def schedules_row(page: str, task: int) -> str:
    return re.search(rf'<tr class="[^"]*" id="task-{task}">.*?</tr>', page, re.S).group(0)


def automation_row(page: str, name: str) -> str:
    return re.search(rf"<tr class=\"state-[\w-]+\">\s*<td><a [^>]+>{re.escape(name)}</a>.*?</tr>", page,
                     re.S).group(0)


def last_run_cell(row: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", row.split('class="nowrap last-run">', 1)[1]
                                    .split("</td>", 1)[0])).split())


def cli_block(output: str, name: str) -> str:
    return output.split(f"{name}  [", 1)[1].split("\n    last run  ", 1)[1].split("\n", 1)[0]


@pytest.fixture
def synced(app, runner):
    assert runner.invoke(args=["schedules", "sync"]).exit_code == 0


def test_run_now_is_the_last_run_on_every_page_and_in_the_cli(app, client, auth, runner, synced, procs):
    """The issue's walk: Run now on a task that never ran, then its worker; every reader agrees."""
    auth.login()
    with app.app_context():
        ping, backup = task_id("automation-ping"), task_id("backup-database")
    before = client.get("/admin/schedules").get_data(as_text=True)
    assert last_run_cell(schedules_row(before, ping)) == "not run yet"
    automation = client.get("/admin/automation").get_data(as_text=True)
    row = automation_row(automation, "automation-ping")
    assert 'class="badge state-not-run-yet">not run yet' in row and "healthy" not in row

    assert "enqueued now" in auth.post(f"/admin/schedules/{ping}/run", follow_redirects=True).get_data(as_text=True)
    queued = client.get("/admin/schedules").get_data(as_text=True)
    with app.app_context():
        run = db.session.scalar(sa.select(JobRun).where(JobRun.task_name == "diagnostics.ping"))
        enqueued = show_time(run.created_at)
    assert last_run_cell(schedules_row(queued, ping)) == f"{enqueued} queued"
    pending = automation_row(client.get("/admin/automation").get_data(as_text=True), "automation-ping")
    assert last_run_cell(pending) == f"{enqueued} queued" and "state-pending" in pending

    worker = procs.run("worker", "--burst")
    assert worker.returncode == 0, worker.stdout + worker.stderr
    with app.app_context():
        run = db.session.scalar(sa.select(JobRun).where(JobRun.task_name == "diagnostics.ping"))
        assert run.status == "succeeded"
        when = show_time(run.created_at)
        in_cli = show_time(run.created_at, label=True, relative=False)
    expected = f"{when} succeeded"
    schedules = client.get("/admin/schedules").get_data(as_text=True)
    row = schedules_row(schedules, ping)
    assert last_run_cell(row) == expected and '<td class="num">1</td>' in row
    assert last_run_cell(schedules_row(schedules, backup)) == "not run yet"
    automation = client.get("/admin/automation").get_data(as_text=True)
    row = automation_row(automation, "automation-ping")
    assert last_run_cell(row) == expected and "state-healthy" in row and "100.0%" in row
    assert "state-not-run-yet" in automation_row(automation, "backup-database")
    history = client.get(f"/admin/schedules/{ping}/history").get_data(as_text=True)
    assert f"Last run: {expected}" in " ".join(unescape(re.sub(r"<[^>]+>", " ", history)).split())
    line = re.search(r'<tr class="source-manual">.*?</tr>', history, re.S).group(0)
    assert '<span class="badge">manual</span>' in line and "succeeded" in line and when in line
    assert "It has not run yet." not in history
    listing = runner.invoke(args=["schedules", "list"])
    assert listing.exit_code == 0
    assert cli_block(listing.output, "automation-ping").startswith(f"{in_cli} (succeeded); 1 finished run(s)")
    assert cli_block(listing.output, "backup-database").startswith("not run yet; 0 finished run(s)")


def test_history_says_who_started_each_run(app, client, auth, synced):
    """Its own ticks, manual runs, and runs of the same task by another schedule, newest first."""
    now = utcnow()
    with app.app_context():
        ping = task_id("automation-ping")
        db.session.add(PeriodicTask(name="second ping", task="diagnostics.ping", interval_id=db.session.scalar(
            sa.select(PeriodicTask.interval_id).where(PeriodicTask.id == ping))))
        db.session.flush()
        other = task_id("second ping")
        tick = now - timedelta(hours=2)
        fired = entry_id(ping, tick)
        db.session.add(ScheduleFiring(periodic_task_id=ping, tick_at=tick, job_id=fired, status="succeeded",
                                      claimed_at=tick))
        for job_id, age, status in ((fired, 120, "succeeded"), ("by-hand", 60, "failed"),
                                    (entry_id(other, now - timedelta(minutes=30)), 30, "succeeded")):
            at = now - timedelta(minutes=age)
            db.session.add(JobRun(job_id=job_id, task_name="diagnostics.ping", queue="default", status=status,
                                  created_at=at, started_at=at, finished_at=at, duration_seconds=0.5))
        db.session.commit()
    auth.login()
    history = client.get(f"/admin/schedules/{ping}/history").get_data(as_text=True)
    lines = re.findall(r'<tr class="source-(\w+)">.*?</tr>', history, re.S)
    assert lines == ["other", "manual", "tick"]
    assert "second ping" in history.split('class="source-other"')[1].split("</tr>")[0]
    assert "failed" in history.split('class="source-manual"')[1].split("</tr>")[0]


def test_a_claimed_tick_not_in_the_audit_yet_is_the_last_run(app, synced):
    """A short job writes its audit row when it ends; until then its claimed tick is the newest attempt."""
    now = utcnow()
    with app.app_context():
        row = db.session.get(PeriodicTask, task_id("automation-ping"))
        db.session.add(JobRun(job_id="earlier", task_name="diagnostics.ping", queue="default", status="succeeded",
                              created_at=now - timedelta(minutes=10)))
        tick = now - timedelta(minutes=1)
        db.session.add(ScheduleFiring(periodic_task_id=row.id, tick_at=tick, job_id=entry_id(row.id, tick),
                                      status="running", claimed_at=tick))
        db.session.commit()
        last = lastrun.last_run(row)
        assert (last.at, last.status, last.run) == (tick, "running", None)
        # Once the firing's own row is written, that row is the last run (its start is a moment before the claim).
        db.session.add(JobRun(job_id=entry_id(row.id, tick), task_name="diagnostics.ping", queue="default",
                              status="succeeded", created_at=tick - timedelta(milliseconds=3)))
        db.session.commit()
        last = lastrun.last_run(row)
        assert (last.status, last.run.job_id) == ("succeeded", entry_id(row.id, tick))


def test_all_last_runs_in_two_statements_on_the_task_index(app, synced):
    """However many tasks: one statement for the audit (one index probe per task name), one for the firings."""
    with app.app_context():
        for i in range(30):
            db.session.add(JobRun(job_id=f"j{i}", task_name="diagnostics.ping" if i % 2 else "flush_outbox",
                                  queue="default", status="succeeded", created_at=utcnow() - timedelta(minutes=i)))
        db.session.commit()
        rows = db.session.scalars(sa.select(PeriodicTask)).all()
        statements = []

        def seen(conn, cursor, statement, parameters, context, executemany):
            statements.append((statement, parameters))

        sa.event.listen(db.engine, "before_cursor_execute", seen)
        try:
            lasts = lastrun.last_runs(rows)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", seen)
        assert len(statements) == 2
        by_name = {r.name: lasts[r.id] for r in rows}
        assert by_name["automation-ping"].run.job_id == "j1" and by_name["flush-outbox"].run.job_id == "j0"
        assert by_name["backup-database"] is None
        statement, parameters = next((s, p) for s, p in statements if "job_runs" in s)
        sqlite = db.engine.dialect.name == "sqlite"
        with db.engine.connect() as conn:
            if not sqlite:
                conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: which index would it take?
            plan = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement,
                                        parameters).all()
        assert "ix_job_runs_task_created" in " ".join(str(r) for r in plan)
