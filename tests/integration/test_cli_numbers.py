"""Every numeric option of every ``flask`` command has bounds: nan, inf, 1e300, a huge integer or a negative
number is one line on stderr and a non-zero exit, never a traceback and never a command that runs.

The options are not listed by hand: the walk goes through the app's whole command tree, so a command
added later is checked too."""

from __future__ import annotations

import click
import pytest

from itsm.cliparams import FiniteFloatRange
from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import factories

pytestmark = pytest.mark.usefixtures("redis")
# The walk does not depend on the database engine: the SQLite run only.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HOSTILE = ("nan", "inf", "-inf", "1e300", "99999999999999999999", "-1")


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def placeholders(command: click.Command) -> list[str]:
    """Any value for the command's other required parameters (its callback does not run here)."""
    out = []
    for param in command.params:
        if param.required:
            out.append("x" if isinstance(param, click.Argument) else f"{max(param.opts, key=len)}=x")
    return out


def numeric_params(app):
    for path, command in leaf_commands(app.cli):
        for param in command.params:
            if isinstance(param.type, click.types._NumberParamTypeBase):
                yield path, command, param


def test_every_numeric_option_has_bounds_on_both_sides(app):
    found = {(" ".join(path), param.name) for path, _, param in numeric_params(app)}
    assert {("jobs enqueue", "countdown"), ("tickets archive-done", "hours"), ("worker", "max_jobs"),
            ("worker", "concurrency"), ("tickets process-recurring", "batch_size"), ("mail sink", "port")} <= found
    for path, _, param in numeric_params(app):
        kind = param.type
        assert isinstance(kind, click.IntRange | FiniteFloatRange), (path, param.name, kind)
        assert kind.min is not None and kind.max is not None and not kind.clamp, (path, param.name, kind)


@sqlite_only
def test_hostile_numbers_are_one_line_and_run_nothing(app, monkeypatch):
    ran = []
    for path, command, _ in numeric_params(app):
        # A value that got through would run the command (a worker, a mail sink ...): record it instead.
        monkeypatch.setattr(command, "callback", lambda *a, _path=path, **k: ran.append(_path))
    runner = app.test_cli_runner()
    for path, command, param in numeric_params(app):
        assert isinstance(param, click.Option), (path, param.name)  # numeric arguments: none so far
        flag = max(param.opts, key=len)
        low = getattr(param.type, "min", None)
        values = [*HOSTILE, str(low - 1)] if low is not None and low <= 0 else HOSTILE
        for value in values:
            result = runner.invoke(args=[*path, f"{flag}={value}", *placeholders(command)])
            lines = result.stderr.strip().splitlines()
            assert result.exit_code != 0, (path, flag, value, result.output)
            assert "Traceback" not in result.output, (path, flag, value, result.output)
            assert len(lines) == 1 and flag in lines[0], (path, flag, value, result.stderr)
        # Its own lower bound is a good value: the walk does refuse only what it should.
        accepted = runner.invoke(args=[*path, f"{flag}={1 if low is None else low}", *placeholders(command)])
        assert accepted.exit_code == 0 and ran[-1] == path, (path, flag, accepted.output)


@pytest.mark.parametrize("hours", ["1e9", "99999999999", "nan"])
def test_archive_hours_out_of_bounds_is_one_line(app, procs, hours):
    with app.app_context():
        ticket = factories.make_ticket("Old and done", column_name="Done")
    result = procs.run("tickets", "archive-done", "--hours", hours)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--hours" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    with app.app_context():
        assert db.session.get(Ticket, ticket.id).is_archived is False
