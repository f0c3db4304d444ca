"""Flask CLI command groups (``flask users``, ``flask demo`` ...)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from itsm.demo import demo_cli
    from itsm.placeholders import scheduler_command, schedules_group
    from itsm.users.cli import users_cli
    from jobs.cli import jobs_cli, worker_command

    for command in (users_cli, demo_cli, worker_command, jobs_cli, scheduler_command, schedules_group):
        app.cli.add_command(command)
