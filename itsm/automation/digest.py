"""What the admins' daily emails say: the automation's last day, and what needs an admin now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, select

from itsm.automation import dashboard
from itsm.extensions import db
from itsm.mail.models import EmailMessage, deferred
from itsm.recurring.models import RecurringTicketRun, TicketRecurrence
from itsm.schedules.describe import troubles
from itsm.templating import show_time
from itsm.tickets.models import Ticket
from itsm.users.models import User
from jobs.models import JobRun

BACKUP_STALE = timedelta(hours=36)  # a nightly backup older than this means one was missed


@dataclass
class TaskLine:
    name: str
    runs: int
    failed: int


@dataclass
class Operational:
    since: datetime
    until: datetime
    tasks: list[TaskLine] = field(default_factory=list)
    failures: list[JobRun] = field(default_factory=list)
    archived: int = 0
    recurring_created: int = 0
    emails_sent: int = 0
    emails_failed: int = 0
    emails_deferred: int = 0  # now: tried, not sent yet, to be tried again (not failed)
    backups: list = field(default_factory=list)


def operational(until: datetime, backups: dashboard.Backups, hours: int = 24) -> Operational:
    since = until - timedelta(hours=hours)
    report = Operational(since=since, until=until)
    window = (JobRun.finished_at > since, JobRun.finished_at <= until)
    rows = db.session.execute(
        select(JobRun.task_name, func.count(),
               func.sum(case((JobRun.status.in_(("failed", "lost")), 1), else_=0)))
        .where(*window, JobRun.status.in_(("succeeded", "failed", "lost")))
        .group_by(JobRun.task_name).order_by(JobRun.task_name)).all()
    report.tasks = [TaskLine(name, runs, int(failed or 0)) for name, runs, failed in rows]
    report.failures = db.session.scalars(
        select(JobRun).where(*window, JobRun.status.in_(("failed", "lost")))
        .order_by(JobRun.finished_at.desc()).limit(10)).all()
    # The archive job reports its count in its result: one small row per hourly run.
    results = db.session.scalars(select(JobRun.result).where(
        *window, JobRun.task_name == "archive_done_tickets", JobRun.status == "succeeded")).all()
    report.archived = sum(int(r.get("archived", 0)) for r in results if isinstance(r, dict))
    report.recurring_created = db.session.scalar(
        select(func.coalesce(func.sum(RecurringTicketRun.total_created), 0))
        .where(RecurringTicketRun.started_at > since, RecurringTicketRun.started_at <= until)) or 0
    counts = dict(db.session.execute(
        select(EmailMessage.status, func.count()).where(
            EmailMessage.created_at > since, EmailMessage.created_at <= until,
            EmailMessage.status.in_(("sent", "failed"))).group_by(EmailMessage.status)).all())
    report.emails_sent, report.emails_failed = counts.get("sent", 0), counts.get("failed", 0)
    report.emails_deferred = db.session.scalar(select(func.count()).select_from(EmailMessage).where(deferred()))
    report.backups = [b for b in backups.found if since < b.created_at <= until]
    return report


def _last_run_words(last) -> str:
    if last is None:
        return "not run yet"
    return show_time(last.at, current_app.config["TIME_ZONE"], label=True, relative=False)


@dataclass
class Item:
    title: str
    detail: str
    path: str  # where to act, under BASE_URL
    # A moment the detail ends with, written by the email in its recipient's zone ("... from <when>.").
    when: datetime | None = None


def attention(now: datetime, backups: dashboard.Backups) -> list[Item]:
    """Things only an admin can fix; each one says where."""
    items: list[Item] = []
    failed = db.session.scalar(select(func.count()).select_from(EmailMessage).where(EmailMessage.status == "failed"))
    if failed:
        items.append(Item(f"{failed} email(s) could not be sent",
                          "Check the mail settings, then retry them from the outbox.", "/admin/outbox?status=failed"))
    waiting = db.session.scalar(select(func.count()).select_from(EmailMessage).where(deferred()))
    if waiting:
        last_error = db.session.scalar(select(EmailMessage.last_error).where(deferred())
                                       .order_by(EmailMessage.claimed_at.desc()).limit(1))
        hours = current_app.config["MAIL_DELIVERY_DEADLINE_HOURS"]
        items.append(Item(f"{waiting} email(s) deferred: the mail server has not taken them yet",
                          f"The outbox keeps trying each for {hours} hours after it was written (last error: "
                          f"{(last_error or '')[:160]}). Check the mail server and settings.",
                          "/admin/outbox?status=deferred"))
    found = troubles(now)
    late, invalid = [t.name for t in found.late], [t.name for t, _ in found.invalid]
    if late:
        ran = "; ".join(f"{t.name} {_last_run_words(found.last.get(t.id))}" for t in found.late[:5])
        items.append(Item(f"{len(late)} schedule(s) late: {', '.join(late[:5])}",
                          f"Last run: {ran}. Check that the scheduler and a worker are running.", "/admin/schedules"))
    if invalid:
        items.append(Item(f"{len(invalid)} schedule(s) invalid: {', '.join(invalid[:5])}",
                          "They cannot be evaluated and do not run: edit or disable them.", "/admin/schedules"))
    orphaned = db.session.scalar(
        select(func.count()).select_from(Ticket).join(TicketRecurrence, TicketRecurrence.ticket_id == Ticket.id)
        .join(User, User.id == Ticket.assignee_id)
        .where(Ticket.is_recurring.is_(True), TicketRecurrence.recurrence_active.is_(True), User.active.is_(False)))
    if orphaned:
        items.append(Item(f"{orphaned} recurring ticket(s) assigned to a deactivated user",
                          "Their occurrences open with nobody to tell; assign them to someone else.",
                          "/tickets?archived=recurring"))
    expired = now - timedelta(hours=current_app.config["INVITE_MAX_AGE_HOURS"])
    stale_invites = db.session.scalars(select(User.email).where(
        User.invited_at.is_not(None), User.password_changed_at.is_(None), User.active.is_(True),
        User.invited_at < expired)).all()
    if stale_invites:
        items.append(Item(f"{len(stale_invites)} invitation(s) expired unused: {', '.join(stale_invites[:5])}",
                          "Send them again, or deactivate the accounts.", "/admin/users"))
    newest = backups.newest_verified
    newest_ok = newest.created_at if newest is not None else None
    if newest_ok is None or now - newest_ok > BACKUP_STALE:
        if newest_ok is None:
            items.append(Item("Backups need a look", "No verified backup yet.", "/admin/backups"))
        else:
            items.append(Item("Backups need a look", "The newest verified backup is from", "/admin/backups",
                              when=newest_ok))
    return items
