"""``flask maintenance on|off|status``."""

from __future__ import annotations

import getpass
import os
import socket

import click
from flask import current_app
from redis.exceptions import RedisError

from itsm import maintenance
from itsm.cliparams import Group
from itsm.maintenance import DEFAULT_RETRY_AFTER, MaintenanceError, inflight
from itsm.maintenance.window import since

maintenance_cli = Group("maintenance", help="Maintenance mode: the web answers 503, workers and the scheduler "
                                               "pause.")


def operator(command: str) -> str:
    """Who did it, for `status`: the command, the account and the machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{command} ({user}@{socket.gethostname()}, pid {os.getpid()})"


def _in_flight_line() -> str:
    try:
        return f"In flight: {inflight.in_flight(maintenance.redis_for(current_app)).describe()}."
    except RedisError as err:
        return f"In flight: unknown (Redis unreachable: {err})."


@maintenance_cli.command("on")
@click.option("--message", "-m", default=None, help="Shown on the maintenance page (and in JSON answers).")
@click.option("--retry-after", type=click.IntRange(1, 86400), default=DEFAULT_RETRY_AFTER, show_default=True,
              help="Seconds clients are told to wait (the Retry-After header).")
@click.option("--wait", type=click.IntRange(0, 3600), default=0, show_default=True,
              help="Then wait up to this many seconds for running requests and jobs to finish (exit 1 if not).")
def on_command(message: str | None, retry_after: int, wait: int) -> None:
    """Turn maintenance mode on (or change its message)."""
    try:
        state = maintenance.switch_on(operator("flask maintenance on"), message, retry_after)
    except MaintenanceError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Maintenance mode is on since {since(state)}: the web answers 503 (Retry-After {retry_after}), "
               "workers take no new job, the scheduler enqueues no tick.")
    if wait:
        running = inflight.wait_until_idle(maintenance.redis_for(current_app), wait,
                                           progress=lambda r: click.echo(f"Waiting for {r.describe()} ...", err=True))
        if running.total:
            raise click.ClickException(f"{running.describe()} still running after {wait} s; maintenance mode "
                                       "stays on")
        click.echo("Nothing in flight.")


@maintenance_cli.command("off")
def off_command() -> None:
    """Lift maintenance mode: the web answers again, workers and the scheduler resume."""
    before = maintenance.current()
    try:
        maintenance.switch_off(operator("flask maintenance off"))
    except MaintenanceError as err:
        raise click.ClickException(str(err)) from None
    if before.on:
        click.echo(f"Maintenance mode is off (it was on since {since(before)}, by {before.by}).")
    else:
        click.echo("Maintenance mode is off (it was not on).")


@maintenance_cli.command("status")
def status_command() -> None:
    """Whether maintenance mode is on, since when, by whom, and what is still running."""
    state = maintenance.current()
    source = "" if state.source == "redis" else " (read from the database: Redis has no flag or is unreachable)"
    if state.on:
        click.echo(f"Maintenance mode is ON since {since(state)}, by {state.by}{source}.")
        if state.message:
            click.echo(f"Message: {state.message}")
        click.echo(f"Retry-After: {state.retry_after} s.")
    else:
        last = f" (last switched {since(state)}, by {state.by})" if state.since else ""
        click.echo(f"Maintenance mode is off{last}{source}.")
    click.echo(_in_flight_line())
