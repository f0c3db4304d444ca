"""Recurring tickets from the command line and through real worker and scheduler processes."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.recurring.models import RecurringTicketRun, TicketRecurrence
from itsm.recurring.processor import process_due
from itsm.schedules import service
from itsm.schedules.validation import Definition
from itsm.tickets.models import Ticket
from jobs.models import JobRun
from tests import factories
from tests.processes import wait_for


def add_due_templates(n: int, due: datetime) -> None:
    """``n`` daily templates due at ``due``, inserted in one go (the factory is one commit each)."""
    ids = db.session.scalars(sa.insert(Ticket).returning(Ticket.id), [
        {"title": f"Due {i}", "is_recurring": True, "created_at": due, "updated_at": due} for i in range(n)]).all()
    db.session.execute(sa.insert(TicketRecurrence), [
        {"ticket_id": i, "recurrence_interval": "daily", "recurrence_time_zone": "UTC", "recurrence_anchor": due,
         "next_occurrence": due, "recurrence_due_at": due} for i in ids])
    db.session.commit()


def occurrence_counts() -> list[int]:
    return db.session.scalars(sa.select(sa.func.count(Ticket.id)).where(Ticket.template_id.is_not(None))
                              .group_by(Ticket.template_id)).all()


def test_cli_process_recurring_and_dry_run(app, runner):
    with app.app_context():
        factories.make_template("Check {date}", start=datetime.now(UTC) - timedelta(days=2, minutes=1),
                                recurrence_interval="daily")
    dry = runner.invoke(args=["tickets", "process-recurring", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would create" in dry.output
    assert "1 ticket(s) would be created, 2 due time(s) skipped, 2 missed" in dry.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Ticket.id)).where(Ticket.template_id.is_not(None))) == 0
    result = runner.invoke(args=["tickets", "process-recurring"])
    assert result.exit_code == 0, result.output
    assert "1 template(s) due, 1 ticket(s) created, 2 due time(s) skipped, 2 missed" in result.output
    again = runner.invoke(args=["tickets", "process-recurring"])
    assert "0 template(s) due, 0 ticket(s) created" in again.output
    with app.app_context():
        assert [r.trigger for r in db.session.scalars(sa.select(RecurringTicketRun))] == ["cli", "cli"]


def test_cli_rejects_a_bad_batch_size(runner):
    result = runner.invoke(args=["tickets", "process-recurring", "--batch-size", "0"])
    assert result.exit_code == 2 and "batch-size" in result.output and "Traceback" not in result.output


def test_two_processes_at_once_never_duplicate(app, procs):
    """Two `flask tickets process-recurring` on the same due templates, started together."""
    due = datetime.now(UTC) - timedelta(minutes=1)
    with app.app_context():
        add_due_templates(1500, due)
    racers = [procs.start("tickets", "process-recurring", "--batch-size", "50") for _ in range(2)]
    for proc in racers:
        assert proc.wait(timeout=120) == 0, procs.logs()
    with app.app_context():
        counts = occurrence_counts()
        assert len(counts) == 1500 and set(counts) == {1}
        runs = db.session.scalars(sa.select(RecurringTicketRun)).all()
        assert [r.status for r in runs] == ["success", "success"]
        assert sum(r.total_created for r in runs) == 1500


def test_locked_templates_are_skipped_not_waited_for(app, database_url):
    """On PostgreSQL a worker skips the templates another one holds and takes the rest."""
    if not database_url.startswith("postgresql"):
        pytest.skip("FOR UPDATE SKIP LOCKED is PostgreSQL's; SQLite serialises writers instead")
    due = datetime.now(UTC) - timedelta(minutes=1)
    with app.app_context():
        add_due_templates(30, due)
        held = db.engine.connect()
        held.begin()
        locked = held.execute(sa.select(TicketRecurrence.ticket_id).order_by(TicketRecurrence.ticket_id)
                              .limit(10).with_for_update()).scalars().all()
        result = {}
        worker = threading.Thread(target=lambda: result.update(totals=_process(app)))
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the processor waited for the locked templates"
        assert result["totals"].created == 20
        held.rollback()
        held.close()
        assert process_due().created == 10
        counts = occurrence_counts()
        assert len(counts) == 30 and set(counts) == {1}
        assert not set(locked) - set(db.session.scalars(sa.select(Ticket.template_id)))


def _process(app):
    with app.app_context():
        return process_due()


def test_worker_and_scheduler_open_exactly_one_ticket_within_the_tick(app, procs, redis):
    """The whole path: the scheduler fires the periodic job, a worker runs it, one ticket opens."""
    with app.app_context():
        definition = Definition(name="recurring-fast", task="process_recurring_tickets", kind="interval",
                                every=1, period="seconds", misfire_policy="skip")
        service.save(replace(definition))
        db.session.commit()
        template = factories.make_template("Now {date}", start=datetime.now(UTC), recurrence_interval="daily")
    procs.start("scheduler")
    procs.worker()

    def opened() -> list[Ticket]:
        with app.app_context():
            return db.session.scalars(sa.select(Ticket).where(Ticket.template_id == template.id)).all()

    wait_for(lambda: opened(), timeout=20, message="the recurring ticket")
    with app.app_context():
        first_runs = db.session.scalar(sa.select(sa.func.count(RecurringTicketRun.id)))
    # Let several more ticks run the job again: still exactly one ticket.
    wait_for(lambda: _successful_runs(app) >= first_runs + 3, timeout=20, message="three more runs")
    assert len(opened()) == 1
    with app.app_context():
        run = db.session.scalar(sa.select(RecurringTicketRun).where(RecurringTicketRun.total_created == 1))
        job = db.session.scalar(sa.select(JobRun).where(JobRun.job_id == run.job_id))
        assert run.trigger == "job" and job.task_name == "process_recurring_tickets" and job.status == "succeeded"


def _successful_runs(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(RecurringTicketRun.id))
                                 .where(RecurringTicketRun.status == "success"))
