"""Auto-archive: the threshold from done_at, dry run, history, the CLI, the setting and the job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.housekeeping import settings
from itsm.housekeeping.archive import archive_done
from itsm.housekeeping.tasks import archive_done_tickets
from itsm.tickets import service
from itsm.tickets.models import Ticket, TicketEvent
from jobs.models import JobRun
from tests import factories

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def done_ticket(title: str, done_at: datetime) -> int:
    ticket = factories.make_ticket(title, column_name="Done")
    ticket.done_at = done_at
    db.session.commit()
    return ticket.id


def archived_titles() -> list[str]:
    db.session.expire_all()
    return sorted(db.session.scalars(sa.select(Ticket.title).where(Ticket.is_archived.is_(True))))


def test_threshold_is_measured_from_done_at(app):
    with app.app_context():
        done_ticket("old", NOW - timedelta(hours=24, seconds=1))
        done_ticket("exactly", NOW - timedelta(hours=24))  # not *more* than 24 hours
        done_ticket("fresh", NOW - timedelta(hours=23))
        late_comment = done_ticket("commented", NOW - timedelta(hours=30))
        service.add_comment(db.session.get(Ticket, late_comment), None, "one more thing")  # updated_at is now
        db.session.commit()
        factories.make_ticket("open", column_name="In progress")
        outcome = archive_done(24, now=NOW)
        assert outcome.archived == 2 and archived_titles() == ["commented", "old"]
        archived = db.session.scalar(sa.select(Ticket).where(Ticket.title == "old"))
        assert archived.archived_at == NOW and archived.updated_at == NOW
        event = db.session.scalar(sa.select(TicketEvent).where(TicketEvent.ticket_id == archived.id,
                                                               TicketEvent.kind == "archived"))
        assert event.actor_id is None and event.changes == {"archived": [False, True]}


def test_dry_run_changes_nothing_and_already_archived_stay_untouched(app):
    with app.app_context():
        old = done_ticket("old", NOW - timedelta(days=3))
        before = NOW - timedelta(days=1)
        gone = done_ticket("gone", NOW - timedelta(days=5))
        ticket = db.session.get(Ticket, gone)
        ticket.is_archived, ticket.archived_at = True, before
        db.session.commit()
        dry = archive_done(24, now=NOW, dry_run=True)
        assert dry.archived == 1 and [c[0] for c in dry.candidates] == [old]
        assert archived_titles() == ["gone"]
        assert archive_done(24, now=NOW).archived == 1
        assert db.session.get(Ticket, gone).archived_at == before
        assert archive_done(24, now=NOW).archived == 0  # nothing left: an empty pass


def test_cli_archive_done(app, runner):
    with app.app_context():
        done_ticket("Printer fixed", datetime.now(UTC) - timedelta(hours=5))
    dry = runner.invoke(args=["tickets", "archive-done", "--dry-run", "--hours", "4"])
    assert dry.exit_code == 0 and "Printer fixed" in dry.output and "1 ticket(s)" in dry.output
    assert "Nothing was changed" in dry.output
    assert runner.invoke(args=["tickets", "archive-done"]).output.startswith("Archived 0 ticket(s)")  # 24 h default
    real = runner.invoke(args=["tickets", "archive-done", "--hours", "4"])
    assert real.exit_code == 0 and "Archived 1 ticket(s) done for more than 4 hours" in real.output


@pytest.mark.parametrize("hours", ["0", "-3", "soon"])
def test_cli_rejects_bad_hours(app, runner, hours):
    with app.app_context():
        done_ticket("Printer fixed", datetime.now(UTC) - timedelta(days=5))
    result = runner.invoke(args=["tickets", "archive-done", "--hours", hours])
    assert result.exit_code == 2 and "--hours" in result.output and "Traceback" not in result.output
    with app.app_context():
        assert archived_titles() == []


def test_settings_page_wins_over_the_default_and_the_job_uses_it(app, client, auth):
    auth.login()
    bad = auth.post("/admin/settings", {"archive_after_hours": "0"})
    assert bad.status_code == 400 and "above 0" in bad.get_data(as_text=True)
    assert auth.post("/admin/settings", {"archive_after_hours": "2"}).status_code == 302
    with app.app_context():
        assert settings.archive_after_hours() == 2
        done_ticket("three hours", datetime.now(UTC) - timedelta(hours=3))
        assert archive_done_tickets.apply() == {"archived": 1, "hours": 2.0}
        run = db.session.scalar(sa.select(JobRun).where(JobRun.task_name == "archive_done_tickets"))
        assert run.status == "succeeded" and run.result == {"archived": 1, "hours": 2.0}
    assert auth.post("/admin/settings", {"use_default": "y"}).status_code == 302
    with app.app_context():
        assert settings.archive_after_hours() == 24


def test_unarchive_from_the_ticket_page(app, client, auth):
    with app.app_context():
        ticket_id = done_ticket("old", NOW - timedelta(days=3))
        archive_done(24, now=NOW)
    auth.login()
    assert "Unarchive" in client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert auth.post(f"/tickets/{ticket_id}/unarchive").status_code == 302
    with app.app_context():
        assert archived_titles() == []
