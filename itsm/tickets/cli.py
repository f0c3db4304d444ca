"""``flask tickets ...``: ticket work done from the command line."""

from __future__ import annotations

import sys

import click

from itsm.cliparams import FiniteFloatRange, Group
from itsm.dbtypes import utcnow
from itsm.housekeeping import settings
from itsm.housekeeping.archive import archive_done, settle
from itsm.recurring import runs
from itsm.recurring.processor import BATCH_SIZE, Totals, process_due

tickets_cli = Group("tickets", help="Tickets and recurring tickets.")


def _progress(totals: Totals) -> None:
    if sys.stderr.isatty():
        click.echo(f"\r  {totals.processed} template(s) processed, {totals.created} ticket(s) created",
                   err=True, nl=False)


@tickets_cli.command("process-recurring")
@click.option("--dry-run", is_flag=True, help="Show which tickets would be created; change nothing.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=BATCH_SIZE, show_default=True,
              help="Templates handled per transaction.")
def process_recurring(dry_run: bool, batch_size: int) -> None:
    """Create the recurring tickets that are due now (exactly once each)."""
    now = utcnow()
    if dry_run:
        totals = process_due(now, dry_run=True, batch_size=batch_size, progress=_progress)
        _end_progress()
        for template_id, title, when in totals.planned:
            click.echo(f"would create  {when:%Y-%m-%d %H:%M} UTC  from template #{template_id}: {title}")
        click.echo(f"Dry run: {totals.processed} template(s) due, {len(totals.planned)} ticket(s) would be "
                   f"created, {totals.skipped} due time(s) skipped, {totals.missed} missed. Nothing was changed.")
        return
    try:
        run_id, totals = runs.run(trigger="cli", now=now, batch_size=batch_size, progress=_progress)
    except Exception as err:  # recorded on the run; the operator gets one line, not a traceback
        _end_progress()
        raise click.ClickException(f"processing failed: {type(err).__name__}: {err}") from None
    _end_progress()
    click.echo(f"Run #{run_id}: {totals.processed} template(s) due, {totals.created} ticket(s) created, "
               f"{totals.skipped} due time(s) skipped, {totals.missed} missed, {totals.ended} series ended.")


def _end_progress() -> None:
    if sys.stderr.isatty():
        click.echo(err=True)


@tickets_cli.command("archive-done")
@click.option("--dry-run", is_flag=True, help="List what would be archived; change nothing.")
@click.option("--hours", type=FiniteFloatRange(settings.MIN_ARCHIVE_HOURS, settings.MAX_ARCHIVE_HOURS),
              help="Archive tickets done for more than this many hours (default: the archive setting).")
def archive_done_command(dry_run: bool, hours: float | None) -> None:
    """Archive tickets that have been in a done column for more than N hours."""
    if hours is None:
        hours = settings.archive_after_hours()
    outcome = archive_done(hours, dry_run=dry_run)
    if dry_run:
        for ticket_id, title, done_at in outcome.candidates:
            click.echo(f"#{ticket_id}  done since {done_at:%Y-%m-%d %H:%M} UTC  {title}")
        more = outcome.archived - len(outcome.candidates)
        if more > 0:
            click.echo(f"... and {more} more")
        click.echo(f"Dry run: {outcome.archived} ticket(s) done for more than {hours:g} hours would be archived. "
                   "Nothing was changed.")
        return
    click.echo(f"Archived {outcome.archived} ticket(s) done for more than {hours:g} hours.")
    settle(outcome)
