"""Backup jobs: the nightly backup (then a verify of it), on-demand verify, and tiered pruning."""

from __future__ import annotations

import logging

from itsm.backups.service import create_backup, prune
from itsm.backups.service import verify_backup as verify
from itsm.backups.store import BackupError, resolve
from jobs.task import task

log = logging.getLogger(__name__)


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
    verify_backup.delay(backup.name)
    return {"file": backup.name, "size": backup.size, "rows": sum(backup.manifest["tables"].values())}


@task(name="verify_backup", queue="low", max_retries=0, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 300,
      on_failure=_report_failure)
def verify_backup(name: str) -> dict:
    """Checksum and test-restore a backup; the outcome is stored in its manifest."""
    manifest = verify(resolve(name))
    return {"file": name, "verified": manifest["verified"], "message": manifest["verify_message"]}


@task(name="prune_backups", queue="low", max_retries=2, time_limit=600, on_failure=_report_failure)
def prune_backups() -> dict:
    """Delete backups no retention tier keeps (never the newest verified one)."""
    kept, deleted, stale = prune()
    return {"kept": len(kept), "deleted": [b.name for b in deleted][:50], "deleted_count": len(deleted),
            "stale_removed": [p.name for p in stale][:50]}
