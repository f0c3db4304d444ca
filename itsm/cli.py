"""Flask CLI command groups (``flask users``, ``flask demo`` ...)."""

from __future__ import annotations

import click
from flask import Flask


def _show_usage_error_on_one_line(self, file=None) -> None:
    hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
    click.echo(f"Error: {self.format_message()}{hint}", err=True, file=file)


def register(app: Flask) -> None:
    # CONTRACT: every command fails with a one-line reason on stderr, bad options included.
    click.exceptions.UsageError.show = _show_usage_error_on_one_line

    from itsm.backups.cli import backup_cli
    from itsm.demo import demo_cli
    from itsm.mail.cli import mail_cli
    from itsm.maintenance.cli import maintenance_cli
    from itsm.schedules.cli import schedules_cli
    from itsm.tickets.cli import tickets_cli
    from itsm.users.cli import users_cli
    from jobs.cli import jobs_cli, scheduler_command, worker_command

    for command in (users_cli, demo_cli, worker_command, jobs_cli, scheduler_command, schedules_cli,
                    tickets_cli, backup_cli, mail_cli, maintenance_cli):
        app.cli.add_command(command)
