"""``flask mail fetch``, ``flask mail receive`` (an MTA's pipe) and ``flask mail mailboxes ...``."""

from __future__ import annotations

import os
import sys

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError

from itsm.cliparams import Group
from itsm.extensions import db
from itsm.inbound import imap, intake, mailboxes
from itsm.inbound.models import SECURITY, Mailbox
from itsm.mail.cli import mail_cli

# sysexits(3): what an MTA reads from a pipe's exit status.
EX_DATAERR = 65  # the input is not a message at all: bounce it
EX_TEMPFAIL = 75  # try again later (the database is down)
RECEIVE_MAX_BYTES = imap.MAX_MESSAGE_BYTES


def _mailbox(name: str) -> Mailbox:
    found = db.session.scalar(select(Mailbox).where(Mailbox.name == name))
    if found is None:
        known = ", ".join(db.session.scalars(select(Mailbox.name).order_by(Mailbox.name))) or "none yet"
        raise click.ClickException(f"there is no mailbox {name!r} (mailboxes: {known})")
    return found


@mail_cli.command("fetch")
@click.option("--mailbox", "name", help="Only this mailbox (default: every enabled one).")
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing here or on the server.")
@with_appcontext
def fetch_command(name: str | None, dry_run: bool) -> None:
    """Fetch inbound mail now."""
    boxes = [_mailbox(name)] if name else db.session.scalars(
        select(Mailbox).where(Mailbox.enabled.is_(True)).order_by(Mailbox.name)).all()
    if not boxes:
        raise click.ClickException("no enabled mailbox: add one with `flask mail mailboxes add`")
    failed = False
    for box in boxes:
        report = imap.fetch(box, dry_run=dry_run)
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "nothing new"
        if report.error:
            failed = True
            click.echo(f"{box.name}: error: {report.error}", err=True)
        else:
            click.echo(f"{box.name}: {report.fetched} fetched ({outcomes}) in {report.seconds:.1f} s"
                       + (" (dry run: nothing changed)" if dry_run else ""))
    if failed:
        sys.exit(1)


@mail_cli.command("receive")
@click.option("--mailbox", "name", required=True, help="The mailbox whose defaults new tickets get.")
@with_appcontext
def receive_command(name: str) -> None:
    """One message on standard input (an MTA's pipe), through the same path as a fetched one. Exit 0 when
    it is recorded (imported, or ignored with a reason), 75 on a temporary failure, 65 when it is not a
    message at all."""
    raw = sys.stdin.buffer.read(RECEIVE_MAX_BYTES + 1)
    if len(raw) > RECEIVE_MAX_BYTES:
        click.echo(f"Error: the message is larger than {RECEIVE_MAX_BYTES // 1048576} MiB", err=True)
        sys.exit(EX_DATAERR)
    try:
        box = _mailbox(name)
        result = intake.receive(raw, box)
    except (OperationalError, DBAPIError) as err:
        db.session.rollback()
        click.echo(f"Error: the database cannot be reached, try again later: {str(err.orig).splitlines()[0]}",
                   err=True)
        sys.exit(EX_TEMPFAIL)
    if result.outcome == "failed" and result.reason.startswith("cannot be parsed"):
        click.echo(f"Error: {result.reason}", err=True)
        sys.exit(EX_DATAERR)
    if result.outcome == "error":
        click.echo(f"Error: {result.reason}; try again later", err=True)
        sys.exit(EX_TEMPFAIL)
    where = f" #{result.ticket_id}" if result.ticket_id else ""
    click.echo(f"{result.outcome}{where}{': ' + result.reason if result.reason else ''}")


@mail_cli.group("mailboxes", cls=Group, help="Inbound mailboxes.")
def mailboxes_cli() -> None:
    pass


@mailboxes_cli.command("add")
@click.argument("name")
@click.option("--host", required=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Default: 993 for tls, 143 otherwise.")
@click.option("--security", type=click.Choice(SECURITY), default="tls", show_default=True)
@click.option("--user", "username", required=True)
@click.option("--password-env", "password_env", metavar="VAR",
              help="Read the password from this environment variable (else it is asked for).")
@click.option("--folder", default="INBOX", show_default=True)
@with_appcontext
def add_command(name, host, port, security, username, password_env, folder) -> None:
    """Add an IMAP mailbox (the password never goes on the command line)."""
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise click.ClickException(f"the environment variable {password_env} is not set or empty")
    else:
        password = click.prompt("Password", hide_input=True)
    try:
        box = mailboxes.create(name=name, host=host, port=port or (993 if security == "tls" else 143),
                               security=security, username=username, password=password, folder=folder)
    except mailboxes.MailboxError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"mailbox {box.name} added: {box.username} at {box.host}:{box.port} ({box.security}), "
               f"folder {box.folder}")


@mailboxes_cli.command("list")
@with_appcontext
def list_command() -> None:
    """Mailboxes with their last fetch."""
    boxes = db.session.scalars(select(Mailbox).order_by(Mailbox.name)).all()
    if not boxes:
        click.echo("no mailboxes")
    for box in boxes:
        state = "enabled" if box.enabled else "disabled"
        last = box.last_fetch_at.isoformat(timespec="seconds") if box.last_fetch_at else "never"
        error = f"; last error: {box.last_error}" if box.last_error else ""
        click.echo(f"{box.name}\t{box.username}@{box.host}:{box.port}/{box.folder}\t{state}\tlast fetch {last}{error}")


@mailboxes_cli.command("test")
@click.argument("name")
@with_appcontext
def test_command(name: str) -> None:
    """Log in, list the folder, say what happened in one line."""
    try:
        click.echo(imap.test_connection(_mailbox(name)))
    except imap.FetchError as err:
        raise click.ClickException(str(err)) from None


@mailboxes_cli.command("disable")
@click.argument("name")
@with_appcontext
def disable_command(name: str) -> None:
    """Stop fetching this mailbox (its ledger stays)."""
    box = _mailbox(name)
    box.enabled = False
    db.session.commit()
    click.echo(f"mailbox {name} disabled")
