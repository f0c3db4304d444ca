"""``flask backup create|list|prune|verify|copy|restore``."""

from __future__ import annotations

import click

from itsm.backups import copying, service
from itsm.backups.store import BackupError, human_size, list_backups, resolve, size_mismatch_note
from itsm.cliparams import Group
from itsm.dbtypes import utcnow
from itsm.maintenance import MaintenanceError
from itsm.maintenance.cli import operator
from itsm.maintenance.window import ON_TIMEOUT, Window

backup_cli = Group("backup", help="Database backups.")


def _fail(err: BackupError) -> click.ClickException:
    return click.ClickException(str(err))


@backup_cli.command("create")
def create_command() -> None:
    """Back the database up into BACKUP_DIR (compressed, with a manifest)."""
    click.echo("Backing up ...", err=True)
    try:
        backup = service.create_backup()
    except BackupError as err:
        raise _fail(err) from None
    rows = sum(backup.manifest["tables"].values())
    click.echo(f"Created {backup.path} ({human_size(backup.size)}, {rows} rows in {len(backup.manifest['tables'])} "
               "tables). Verify it with `flask backup verify`.")


@backup_cli.command("list")
def list_command() -> None:
    """Backups in BACKUP_DIR, newest first, with size, tier and verification."""
    backups = list_backups()
    if not backups:
        click.echo("No backups yet. Create one with `flask backup create`.")
        return
    keep = service.tiers_of_current(backups)
    for b in backups:
        state = {True: "verified", False: "FAILED verify", None: "not verified"}[b.verified]
        flag = f"  {size_mismatch_note(b)}" if b.size_mismatch else ""
        click.echo(f"{b.name}  {human_size(b.size):>10}  {keep.get(b.name, 'expired'):<15}  {state:<13}"
                   f"{copy_note(b)}{flag}".rstrip())


def copy_note(backup) -> str:
    """The last copy off the machine, for ``list``: "  copied 2026-11-21 03:04 UTC", "  COPY FAILED: ..."."""
    state = backup.copy_state
    if state is None:
        return ""
    if state == "copied":
        when = backup.copied_at
        return f"  copied{f' {when:%Y-%m-%d %H:%M} UTC' if when else ''}"
    if state == "copy failed":
        return f"  COPY FAILED: {backup.copy.get('message', 'no reason recorded')}"
    if state == "copy interrupted":
        return "  COPY INTERRUPTED (the process copying it stopped)"
    return f"  copying (since {backup.copy.get('started_at', '?')} on {backup.copy.get('host', '?')})"


@backup_cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
def prune_command(dry_run: bool) -> None:
    """Delete the backups no retention tier keeps (never the newest verified one)."""
    kept, doomed, stale = service.prune(utcnow(), dry_run=dry_run)
    for path in stale:
        click.echo(f"{'would remove' if dry_run else 'removed'}  {path.name}  (left by a backup that did not finish)")
    for backup in doomed:
        click.echo(f"{'would delete' if dry_run else 'deleted'}  {backup.name}")
    click.echo(f"{'Dry run: ' if dry_run else ''}{len(doomed)} backup(s) {'would be ' if dry_run else ''}deleted, "
               f"{len(kept)} kept." + (" Nothing was changed." if dry_run else ""))


@backup_cli.command("verify")
@click.argument("file")
def verify_command(file: str) -> None:
    """Check FILE's checksum, restore it into a scratch database and compare row counts."""
    try:
        path = resolve(file)
        click.echo(f"Verifying {path.name} ...", err=True)
        manifest = service.verify_backup(path)
    except BackupError as err:
        raise _fail(err) from None
    click.echo(f"{path.name} is good: {manifest['verify_message']}.")


@backup_cli.command("copy")
@click.argument("file")
def copy_command(file: str) -> None:
    """Copy the verified backup FILE off this machine with BACKUP_COPY_COMMAND again (after a failed copy)."""
    try:
        path = resolve(file)
        click.echo(f"Copying {path.name} ...", err=True)
        record = copying.copy_backup(path)
    except BackupError as err:
        raise _fail(err) from None
    if record["state"] != "copied":
        raise click.ClickException(f"copying {path.name} failed: {record['message']}; the backup is kept")
    click.echo(f"{path.name}: {record['message']}.")


@backup_cli.command("restore")
@click.argument("file")
@click.option("--yes", is_flag=True, help="Confirm: the configured database is replaced by the backup.")
@click.option("--force", is_flag=True, help="Restore even a backup whose last verification failed.")
@click.option("--wait", type=click.IntRange(0, 3600), default=60, show_default=True,
              help="Seconds to wait, in maintenance mode, for running requests and jobs to finish.")
@click.option("--on-timeout", type=click.Choice(ON_TIMEOUT), default="abandon", show_default=True,
              help="If they do not: abandon the restore and lift maintenance mode, abandon it and keep "
                   "maintenance mode on, or proceed anyway (their writes may be lost).")
def restore_command(file: str, yes: bool, force: bool, wait: int, on_timeout: str) -> None:
    """Replace the configured database with FILE, in maintenance mode, after a safety backup."""
    window = None
    try:
        path = resolve(file)
        if not yes:
            raise BackupError(f"restoring {path.name} replaces everything in the configured database; "
                              "add --yes to go ahead")
        service.check_restorable(path, force)
        window = Window(operator(f"flask backup restore {path.name}"), f"A backup ({path.name}) is being restored.",
                        wait, on_timeout, echo=lambda line: click.echo(line, err=True))
        with window:
            click.echo(f"Taking a safety backup, then restoring {path.name} ...", err=True)
            safety = service.restore_backup(path, force)
    except (BackupError, MaintenanceError) as err:
        raise click.ClickException(f"{err}{window.outcome() if window else ''}") from None
    click.echo(f"Restored {path.name}. What was there before is in {safety.name}{window.outcome()}.")
