"""Admins' emails written by jobs: the daily digests and late-schedule alerts, each told once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from itsm.automation.admin_mail import alert_late_schedules, send_daily_digests
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.tasks import send_email
from itsm.recurring.models import RecurringTicketRun
from itsm.schedules.models import PeriodicTask
from itsm.users.models import User
from jobs.models import JobRun
from tests import factories


@pytest.fixture
def app_config(mailserver):
    return mailserver.app_config()


def mails(kind: str) -> list[EmailMessage]:
    db.session.expire_all()
    return db.session.scalars(sa.select(EmailMessage).where(EmailMessage.kind == kind).order_by(EmailMessage.id)).all()


def prefer(user_id: int, **flags) -> None:
    user = db.session.get(User, user_id)
    for name, value in flags.items():
        setattr(user, name, value)
    db.session.commit()


def run(task: str, status: str, finished, **extra) -> None:
    db.session.add(JobRun(job_id=f"job-{task}-{finished.timestamp()}-{status}", task_name=task, queue="default",
                          status=status, finished_at=finished, started_at=finished - timedelta(seconds=2),
                          duration_seconds=2.0, **extra))


def test_operational_digest_once_a_day_to_those_who_asked(app, ids, mailserver):
    now = utcnow()
    with app.app_context():
        second = factories.make_user("second.admin@example.com", role="admin")
        prefer(ids.admin, notify_operational=True, notify_admin_actions=False)
        prefer(second.id, notify_operational=False, notify_admin_actions=False)
        run("archive_done_tickets", "succeeded", now - timedelta(hours=2), result={"archived": 7, "hours": 24})
        run("archive_done_tickets", "succeeded", now - timedelta(hours=1), result={"archived": 5, "hours": 24})
        run("archive_done_tickets", "succeeded", now - timedelta(hours=30), result={"archived": 100, "hours": 24})
        run("backup_database", "failed", now - timedelta(hours=3), error_type="BackupError",
            error_message="pg_dump: connection refused")
        db.session.add(RecurringTicketRun(started_at=now - timedelta(hours=4), status="success", total_created=3))
        db.session.commit()
        first = send_daily_digests(now)
        later = now + timedelta(minutes=5)
        if later.date() != now.date():  # run just before midnight UTC: stay on the same day
            later = now - timedelta(minutes=5)
        again = send_daily_digests(later)  # a retried or duplicate run the same day
        [digest] = mails("digest_operational")
        assert (first["queued"], again["queued"]) == (1, 0)
        assert digest.to_address == "admin@example.com"
        text = digest.body_text
        assert "Tickets archived:         12" in text  # the run 30 hours ago is outside the day
        assert "Recurring tickets opened: 3" in text
        assert "backup_database: BackupError pg_dump: connection refused" in text
        assert "archive_done_tickets" in text and "backup_database" in digest.body_html
        mailserver.start()
        assert send_email.apply((digest.id,))["sent"] is True
        assert "Automation digest" in mailserver.messages[0]["Subject"]
        # The next day brings the next digest.
        assert send_daily_digests(now + timedelta(days=1))["queued"] == 1


def test_admin_actions_list_what_needs_an_admin(app, ids):
    now = utcnow()
    with app.app_context():
        prefer(ids.admin, notify_operational=False, notify_admin_actions=True)
        db.session.add(EmailMessage(kind="test", to_address="x@example.com", subject="s", body_text="b",
                                    status="failed", attempts=6, last_error="SMTPConnectError"))
        template = factories.make_template("Patch check", start=now + timedelta(days=1), recurrence_interval="weekly",
                                           ticket_fields={"assignee_id": ids.agent})
        assert template.is_recurring
        prefer(ids.agent, active=False)
        invited = factories.make_user("slow@example.com")
        invited.invited_at, invited.password_changed_at = now - timedelta(days=5), None
        db.session.commit()
        assert send_daily_digests(now)["queued"] == 1
        [message] = mails("admin_actions")
        text = message.body_text
        for expected in ("1 email(s) could not be sent", "/admin/outbox?status=failed",
                         "1 recurring ticket(s) assigned to a deactivated user",
                         "1 invitation(s) expired unused: slow@example.com", "Backups need a look"):
            assert expected in text, expected
        # With the preference off, nothing.
        prefer(ids.admin, notify_admin_actions=False)
        assert send_daily_digests(now + timedelta(days=1))["queued"] == 0


def test_a_late_schedule_is_told_once_per_episode(app, ids, runner):
    now = utcnow()
    assert runner.invoke(args=["schedules", "sync"]).exit_code == 0
    with app.app_context():
        second = factories.make_user("quiet.admin@example.com", role="admin")
        prefer(second.id, notify_system_failures=False)
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=now + timedelta(minutes=5)))
        ping = db.session.scalar(sa.select(PeriodicTask).where(PeriodicTask.name == "automation-ping"))
        ping.last_run_at = now - timedelta(hours=2)  # every 10 minutes: late
        db.session.commit()
        first = alert_late_schedules(now)
        assert first == {"late": ["automation-ping"], "invalid": [], "queued": 1}
        assert alert_late_schedules(now + timedelta(minutes=5)) == {"late": ["automation-ping"], "invalid": [],
                                                                    "queued": 0}
        [alert] = mails("system_failure")
        assert alert.to_address == "admin@example.com" and "automation-ping is late" in alert.subject
        assert "flask jobs ping" in alert.body_text
        # It ran, then fell behind again: a new episode, a new email.
        ping = db.session.get(PeriodicTask, ping.id)
        ping.last_run_at = now - timedelta(minutes=50)
        db.session.commit()
        assert alert_late_schedules(now)["queued"] == 1
        # Nothing late: nothing sent.
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=now))
        db.session.commit()
        assert alert_late_schedules(now) == {"late": [], "invalid": [], "queued": 0}


def test_late_alerts_and_the_digest_count_a_manual_run_as_the_last_run(app, ids, runner):
    from zoneinfo import ZoneInfo

    from itsm.templating import show_time

    now = utcnow()
    assert runner.invoke(args=["schedules", "sync"]).exit_code == 0
    with app.app_context():
        prefer(ids.admin, notify_system_failures=True, notify_admin_actions=True, notify_operational=False)
        db.session.execute(sa.update(PeriodicTask).values(last_run_at=now))
        db.session.execute(sa.update(PeriodicTask).where(PeriodicTask.name == "automation-ping").values(
            last_run_at=None, created_at=now - timedelta(hours=3), date_changed=now - timedelta(hours=3)))
        db.session.commit()
        assert alert_late_schedules(now)["late"] == ["automation-ping"]
        [alert] = mails("system_failure")
        assert "it has not run yet since it was set up or last changed" in alert.body_text
        # Run by hand (Run now, the CLI) two hours ago, never by its ticks: that is its last run.
        manual = now - timedelta(hours=2)
        db.session.add(JobRun(job_id="by-hand", task_name="diagnostics.ping", queue="default", status="succeeded",
                              created_at=manual, started_at=manual, finished_at=manual))
        db.session.commit()
        assert alert_late_schedules(now)["queued"] == 1  # a new episode, counted from the manual run
        newest = mails("system_failure")[-1].body_text
        zone = ZoneInfo(app.config["TIME_ZONE"])
        assert f"it last ran {show_time(manual, zone, label=True, relative=False)}." in newest
        assert send_daily_digests(now)["queued"] == 1
        [digest] = mails("admin_actions")
        assert "1 schedule(s) late: automation-ping" in digest.body_text
        assert f"Last run: automation-ping {show_time(manual, zone, label=True, relative=False)}" in digest.body_text
        # Run by hand a minute ago: not late.
        db.session.add(JobRun(job_id="by-hand-2", task_name="diagnostics.ping", queue="default", status="queued",
                              created_at=now - timedelta(minutes=1)))
        db.session.commit()
        assert alert_late_schedules(now) == {"late": [], "invalid": [], "queued": 0}
