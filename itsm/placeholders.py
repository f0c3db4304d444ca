"""Stand-in for ``flask scheduler`` until the periodic scheduler lands.

They keep running (so honcho keeps the web process up) and say plainly that
there is nothing to run yet.
"""

from __future__ import annotations

import signal
import threading

import click


def wait_for_signal(what: str) -> None:
    click.echo(f"itsm {what}: not available yet in this version; waiting for SIGTERM.", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@click.command("scheduler")
def scheduler_command() -> None:
    """Periodic job scheduler (placeholder)."""
    wait_for_signal("scheduler")


@click.group("schedules")
def schedules_group() -> None:
    """Periodic jobs (placeholder until the scheduler lands)."""


@schedules_group.command("sync")
def schedules_sync() -> None:
    """Reconcile periodic jobs; none are defined yet."""
    click.echo("No periodic jobs are defined yet; nothing to sync.")
