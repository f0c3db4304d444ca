"""The product's periodic jobs, declared as data: the single source of truth.

``flask schedules sync`` (run by the Procfile's release phase) writes these into the
database, where the scheduler reads them and admins may override them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    cron: str | None = None  # "minute hour day_of_month month_of_year day_of_week", in `timezone`
    every: int | None = None  # or an interval of `every` `period`
    period: str = "minutes"
    queue: str | None = None  # default: the task's own queue
    description: str = ""
    enabled: bool = True
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    timezone: str | None = None  # default: TIME_ZONE
    misfire: str = "once"  # after downtime: skip, once (the latest missed tick) or all (within the window)
    catchup_window: int = 86400
    overlap: str = "skip"  # skip a tick while the previous run is still running, or allow
    jitter: int = 0  # random delay of up to this many seconds


REGISTRY: tuple[Entry, ...] = (
    Entry(name="automation-ping", task="diagnostics.ping", every=10, period="minutes",
          description="Proves the whole path works: scheduler, Redis, a worker and the database.",
          misfire="skip"),
    Entry(name="flush-outbox", task="flush_outbox", every=1, period="minutes",
          description="Sends emails left pending (for example while Redis was down).", misfire="skip"),
    Entry(name="fetch-mail", task="fetch_mail", every=1, period="minutes",
          description="Fetches every enabled inbound mailbox: new mail opens tickets, replies thread onto theirs.",
          misfire="skip", overlap="skip"),
    Entry(name="process-recurring-tickets", task="process_recurring_tickets", every=5, period="minutes",
          description="Opens the tickets recurring templates are due to open (exactly once each).",
          misfire="once"),
    Entry(name="archive-done-tickets", task="archive_done_tickets", cron="0 * * * *",
          description="Archives tickets that have been in a done column longer than the archive setting.",
          misfire="once"),
    Entry(name="backup-database", task="backup_database", cron="0 3 * * *",
          description="Backs the database up (then verifies the new backup by restoring it into a scratch database).",
          misfire="once"),
    Entry(name="prune-backups", task="prune_backups", cron="0 4 * * *",
          description="Deletes backups no retention tier keeps (never the newest verified one).", misfire="once"),
    Entry(name="watch-schedules", task="watch_schedules", every=5, period="minutes",
          description="Emails admins (system failures) when a schedule is late; once per late episode.",
          misfire="skip"),
    Entry(name="admin-digests", task="send_admin_digests", cron="0 7 * * *",
          description="Daily emails to admins: the automation digest, and what needs an admin.", misfire="once"),
    Entry(name="cleanup-attachment-blobs", task="cleanup_attachment_blobs", cron="15 4 * * *",
          description="Deletes stored files no attachment uses any more (removed, or their ticket deleted).",
          misfire="once"),
    Entry(name="cleanup-stuck-runs", task="cleanup_stuck_runs", every=10, period="minutes",
          description="Marks runs lost that are still running after twice their time limit.", misfire="skip"),
    Entry(name="purge-job-runs", task="purge_job_runs", cron="30 4 * * *",
          description="Removes job-run audit rows older than JOB_RUN_RETENTION_DAYS.", misfire="once"),
    Entry(name="cleanup-failed-jobs", task="cleanup_failed_jobs", cron="45 4 * * *",
          description="Removes RQ failed-job entries older than JOB_RUN_RETENTION_DAYS.", misfire="once"),
)


def entries() -> tuple[Entry, ...]:
    return REGISTRY
