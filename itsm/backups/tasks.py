"""Backup jobs: the nightly backup (then a verify of it, then its copy off the machine), on-demand verify
and copy, and tiered pruning."""

from __future__ import annotations

import logging

from itsm.automation.admin_mail import alert_backup_copy_failed
from itsm.backups import copying
from itsm.backups.service import create_backup, prune
from itsm.backups.service import verify_backup as verify
from itsm.backups.store import BackupError, resolve
from itsm.config import COPY_TIMEOUT_MAX
from itsm.extensions import db
from jobs.task import task

log = logging.getLogger(__name__)
VERIFY_LIMIT = 6 * 3600
LIMIT_MARGIN = 300  # between the soft and the hard time limit, and above the copy's own timeout


def _report_failure(task_name: str, job_id: str, exc: BaseException, args, kwargs) -> None:
    """After the last retry. (Emailing the admins who asked for system failures comes with the outbox.)"""
    log.error("%s[%s] failed for good: %s", task_name, job_id, exc)


def _backup_errors() -> tuple[type[Exception], ...]:
    return (BackupError, OSError)


@task(name="backup_database", queue="low", autoretry_for=_backup_errors(), retry_backoff=60, retry_backoff_max=240,
      retry_jitter=False, max_retries=3, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 300,
      on_failure=_report_failure)
def backup_database() -> dict:
    """Back the database up, then queue a verify of the new file (retried after 60, 120 and 240 s)."""
    backup = create_backup()
    verify_backup.delay(backup.name, copy=True)
    return {"file": backup.name, "size": backup.size, "rows": sum(backup.manifest["tables"].values())}


def _copied(name: str, record: dict | None) -> dict | None:
    """The copy's outcome for the job's result; a failure is told to the admins (the backup stays)."""
    if record is None:
        return None
    if record["state"] != "copied":
        log.error("copying %s off this machine failed: %s", name, record["message"])
        try:
            alert_backup_copy_failed(name, record)
        except Exception:  # the failure is in the manifest and the log whatever happens to the email
            db.session.rollback()
            log.exception("the email about the failed copy of %s could not be written", name)
    return {"state": record["state"], "message": record["message"], "attempts": record["attempts"]}


# The copy runs in the same job as the verification, on the machine that has the file, within its limits.
@task(name="verify_backup", queue="low", max_retries=0, time_limit=VERIFY_LIMIT + COPY_TIMEOUT_MAX + LIMIT_MARGIN,
      soft_time_limit=VERIFY_LIMIT + COPY_TIMEOUT_MAX, on_failure=_report_failure)
def verify_backup(name: str, copy: bool = False) -> dict:
    """Checksum and test-restore a backup; the outcome is stored in its manifest. With ``copy`` (the nightly
    backup's), a verified backup is then copied off the machine once, when BACKUP_COPY_COMMAND is set."""
    path = resolve(name)
    manifest = verify(path)
    result = {"file": name, "verified": manifest["verified"], "message": manifest["verify_message"]}
    if copy:
        result["copy"] = _copied(name, copying.copy_backup(path, automatic=True))
    return result


@task(name="copy_backup", queue="low", max_retries=0, time_limit=COPY_TIMEOUT_MAX + 2 * LIMIT_MARGIN,
      soft_time_limit=COPY_TIMEOUT_MAX + LIMIT_MARGIN, on_failure=_report_failure)
def copy_backup(name: str) -> dict:
    """Copy a verified backup off the machine again (the admin page's retry); never retried by itself."""
    return {"file": name, "copy": _copied(name, copying.copy_backup(resolve(name)))}


@task(name="prune_backups", queue="low", max_retries=2, time_limit=600, on_failure=_report_failure)
def prune_backups() -> dict:
    """Delete backups no retention tier keeps (never the newest verified one)."""
    kept, deleted, stale = prune()
    return {"kept": len(kept), "deleted": [b.name for b in deleted][:50], "deleted_count": len(deleted),
            "stale_removed": [p.name for p in stale][:50]}
