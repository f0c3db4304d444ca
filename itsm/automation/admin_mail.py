"""Emails to admins that jobs write: the daily digests, late-schedule alerts and failed copies of backups.
Each is told once: a dedupe key per digest day, lateness episode or copy attempt and recipient makes a
second run write nothing."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from itsm.automation import dashboard, digest
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import queue_email
from itsm.schedules import service
from itsm.schedules.describe import late_since, troubles, zone_of
from itsm.users.service import admins_wanting


def _key(*parts) -> str:
    return ":".join(str(p) for p in parts)


def _queue_once(planned: list[tuple[str, tuple, dict]]) -> int:
    """Queue (key, queue_email args, kwargs) whose key is new, in one transaction; the number written."""
    if not planned:
        return 0
    taken = set(db.session.scalars(select(EmailMessage.dedupe_key).where(
        EmailMessage.dedupe_key.in_([key for key, _, _ in planned]))).all())
    written = 0
    for key, args, kwargs in planned:
        if key not in taken:
            queue_email(*args, **kwargs).dedupe_key = key
            written += 1
    try:
        db.session.commit()
    except IntegrityError:  # another run wrote them between our look and our commit
        db.session.rollback()
        return 0
    return written


def send_daily_digests(now: datetime) -> dict:
    day = now.astimezone(ZoneInfo(current_app.config["TIME_ZONE"])).date().isoformat()
    planned = []
    operational_admins = admins_wanting("notify_operational")
    attention_admins = admins_wanting("notify_admin_actions")
    # The backup folder is read once for both emails, and not at all when nobody wants either.
    backups = dashboard.backups() if operational_admins or attention_admins else None
    if operational_admins:
        report = digest.operational(now, backups)
        for admin in operational_admins:
            planned.append((_key("digest", "operational", day, admin.id),
                            ("digest_operational", admin.email, f"[itsm] Automation digest for {day}",
                             "digest_operational"), {"report": report, "day": day}))
    items = digest.attention(now, backups) if attention_admins else []
    if items:
        for admin in attention_admins:
            planned.append((_key("digest", "attention", day, admin.id),
                            ("admin_actions", admin.email, f"[itsm] {len(items)} thing(s) need an admin",
                             "admin_actions"), {"items": items, "day": day}))
    return {"queued": _queue_once(planned), "attention_items": len(items)}


def alert_late_schedules(now: datetime) -> dict:
    """One email per late schedule per lateness episode (until it runs again), and one per invalid
    schedule per definition (until it is edited), to each admin who wants system failures."""
    found = troubles(now)
    recipients = admins_wanting("notify_system_failures") if found.late or found.invalid else []
    planned = []
    for task in found.late:
        last = found.last.get(task.id)
        since = late_since(task, last)
        for admin in recipients:
            planned.append((_key("late", task.id, since.isoformat(), admin.id),
                            ("system_failure", admin.email, f"[itsm] Schedule {task.name} is late", "schedule_late"),
                            {"task": task, "since": since.astimezone(zone_of(task)), "now": now, "last": last}))
    for task, reason in found.invalid:
        definition = service.definition_hash(task)
        for admin in recipients:
            planned.append((_key("invalid", task.id, definition, admin.id),
                            ("system_failure", admin.email, f"[itsm] Schedule {task.name} is invalid",
                             "schedule_late"), {"task": task, "reason": reason, "now": now}))
    return {"late": [t.name for t in found.late], "invalid": [t.name for t, _ in found.invalid],
            "queued": _queue_once(planned)}


def alert_backup_copy_failed(name: str, record: dict) -> int:
    """One email per failed attempt to copy a backup off its machine, to each admin who wants system
    failures (as a job that failed for good); the number written."""
    planned = [(_key("backup-copy", name, record.get("attempts"), admin.id),
                ("system_failure", admin.email, f"[itsm] Copying backup {name} failed", "backup_copy_failed"),
                {"name": name, "copy": record})
               for admin in admins_wanting("notify_system_failures")]
    return _queue_once(planned)
