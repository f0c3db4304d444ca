"""``flask scheduler`` and ``flask schedules sync|list|run``."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from itsm.cliparams import Command, Group
from itsm.dbtypes import utcnow
from itsm.extensions import db
from itsm.schedules import lastrun, service, sync
from itsm.schedules.catalog import entries
from itsm.schedules.describe import describe, late_status, next_runs
from itsm.schedules.models import PeriodicTask
from itsm.schedules.scheduler import run_scheduler
from itsm.schedules.validation import ValidationError
from itsm.templating import show_time
from jobs import logctx
from jobs.cli import require_database, require_redis
from jobs.exceptions import JobsError

schedules_cli = Group("schedules", help="Periodic jobs.")


@click.command("scheduler", cls=Command)
@click.option("--loglevel", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default=None, help="Log level (default: LOG_LEVEL, else WARNING in production).")
@with_appcontext
def scheduler_command(loglevel) -> None:
    """Run the single periodic-job scheduler."""
    app = current_app._get_current_object()
    logctx.install(getattr(logging, (loglevel or app.config["JOBS_LOG_LEVEL"]).upper(), logging.INFO))
    require_redis()
    require_database()
    raise SystemExit(run_scheduler(app))


@schedules_cli.command("sync")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--reset-overrides", is_flag=True, help="Drop admins' overrides of registry jobs.")
def sync_command(dry_run: bool, reset_overrides: bool) -> None:
    """Reconcile the code registry of periodic jobs into the database."""
    try:
        report = sync.sync(entries(), dry_run=dry_run, reset_overrides=reset_overrides)
    except ValidationError as err:
        raise click.ClickException(f"the registry has an invalid entry: {err}") from None
    for line in report.lines():
        click.echo(("would be " if dry_run else "") + line)
    if not report.changed:
        click.echo("Schedules are in sync; nothing changed.")
    elif dry_run:
        click.echo("Dry run: nothing was changed.")


@schedules_cli.command("list")
def list_command() -> None:
    """Periodic jobs with schedule, next runs and last run."""
    now = utcnow()
    rows = db.session.scalars(db.select(PeriodicTask).order_by(PeriodicTask.name)).unique().all()
    if not rows:
        click.echo("No periodic jobs. Run `flask schedules sync`.")
    else:
        click.echo(f"Last runs in {current_app.config['TIME_ZONE']} (TIME_ZONE); next runs in each schedule's zone.")
    lasts = lastrun.last_runs(rows)
    week = lastrun.week_stats({r.task for r in rows}, now - lastrun.WEEK)
    for row in rows:
        flags = [f for f, on in (("disabled", not row.enabled), ("overridden", row.overridden),
                                 ("one-off", row.one_off)) if on]
        click.echo(f"{row.name}  [{row.task}]{'  (' + ', '.join(flags) + ')' if flags else ''}")
        click.echo(f"    schedule  {describe(row)}")
        upcoming = ", ".join(show_time(t, t.tzinfo, label=True, relative=False)
                             for t in next_runs(row, now, 3)) or "none"
        click.echo(f"    next      {upcoming}")
        last = lasts[row.id]
        when = "not run yet" if last is None else (show_time(last.at, label=True, relative=False)
                                                    + (f" ({last.status})" if last.status else ""))
        finished = week.get(row.task, (0, 0))[0]
        click.echo(f"    last run  {when}; {finished} finished run(s) in the last 7 days; "
                   f"{late_status(row, now, last)}")


@schedules_cli.command("run")
@click.argument("name")
def run_command(name: str) -> None:
    """Enqueue a periodic job now (outside its schedule)."""
    row = db.session.scalar(db.select(PeriodicTask).where(PeriodicTask.name == name))
    if row is None:
        known = ", ".join(db.session.scalars(db.select(PeriodicTask.name).order_by(PeriodicTask.name)))
        if not known:
            raise click.ClickException(f"no periodic job named {name!r}: this database has none yet; "
                                       "run `flask schedules sync` first")
        raise click.ClickException(f"no periodic job named {name!r} (known: {known})")
    try:
        handle = service.run_now(row)
    except JobsError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Enqueued {row.name} ({row.task}) as job {handle.id}.")
