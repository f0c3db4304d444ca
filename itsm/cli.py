"""Flask CLI command groups (``flask users``, ``flask demo`` ...)."""

from __future__ import annotations

from flask import Flask

from itsm.backups.cli import backup_cli
from itsm.demo import demo_cli
from itsm.inbound import cli as inbound_cli  # noqa: F401  (its commands join `flask mail`)
from itsm.mail.cli import mail_cli
from itsm.maintenance.cli import maintenance_cli
from itsm.schedules.cli import scheduler_command, schedules_cli
from itsm.tickets.cli import tickets_cli
from itsm.users.cli import users_cli
from jobs.cli import jobs_cli, worker_command


def register(app: Flask) -> None:
    # CONTRACT: every command fails with a one-line reason on stderr, bad options included: each one is a
    # cliparams.Command or belongs to a cliparams.Group.
    for command in (users_cli, demo_cli, worker_command, jobs_cli, scheduler_command, schedules_cli,
                    tickets_cli, backup_cli, mail_cli, maintenance_cli):
        app.cli.add_command(command)
