"""``flask mail sink``: the development SMTP server that ``make run`` starts."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from itsm.cliparams import Group
from itsm.mail.sink import serve


@click.group("mail", cls=Group, help="Email tools.")
def mail_cli() -> None:
    pass


@mail_cli.command("sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=1025, show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where messages are kept (default: MAIL_SINK_DIR, else instance/mail-sink).")
@click.option("--keep", type=click.IntRange(1, 100_000), default=500, show_default=True,
              help="Newest messages kept; older ones are deleted (the outbox page says how many).")
@with_appcontext
def sink_command(host: str, port: int, directory: Path | None, keep: int) -> None:
    """Accept every email on HOST:PORT and keep it for the outbox page (development only: nothing is relayed)."""
    if current_app.config["ITSM_ENV"] == "production":
        raise click.ClickException("the mail sink is for development; in production set MAIL_SERVER to a real "
                                   "SMTP server")
    directory = directory or Path(current_app.config["MAIL_SINK_DIR"] or Path(current_app.instance_path) / "mail-sink")
    try:
        serve(host, port, directory, keep=keep, ready=lambda: click.echo(
            f"mail sink listening on {host}:{port}, keeping the newest {keep} messages in {directory}", err=True))
    except OSError as err:
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
