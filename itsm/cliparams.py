"""Command classes and option types for the ``flask`` commands: every bad input fails in one line, every
number has bounds on both sides.

click's FloatRange lets ``nan`` through (it compares false with both bounds) and reports ``inf`` only when
a bound happens to be set; a number that got through then ended in an OverflowError traceback deep in
``timedelta``. A command's numbers are therefore ``click.IntRange(min, max)`` or ``FiniteFloatRange``."""

from __future__ import annotations

import difflib
import math

import click
from flask.cli import AppGroup


class FiniteFloatRange(click.FloatRange):
    """A finite float within ``[min, max]``; both bounds are required."""

    def __init__(self, min: float, max: float) -> None:  # the keyword names of click's ranges
        super().__init__(min=min, max=max)

    def convert(self, value, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return super().convert(number, param, ctx)


class OneLineUsageError(click.UsageError):
    """A usage error shown as one line on stderr, with where to look for help (CONTRACT: every command
    fails with a one-line reason on stderr, bad options included)."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)
        self.exit_code = error.exit_code

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", err=True, file=file)


class _OneLineErrors:
    """Turn click's usage errors (parsing a command's options, or raised by its body) into one line."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            raise err if isinstance(err, OneLineUsageError) else OneLineUsageError(err) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise err if isinstance(err, OneLineUsageError) else OneLineUsageError(err) from None


class Command(_OneLineErrors, click.Command):
    """Every ``flask`` command of ours (``cls=Command``, or made by a ``Group``)."""


class Group(_OneLineErrors, AppGroup):
    """Every ``flask`` command group of ours: its commands run in the app context and fail in one line."""

    command_class = Command
    group_class = type  # subgroups are Groups too


class AppCommands(Group):
    """The app's ``app.cli``. Flask's own top-level group asks it for any name it does not know itself, so
    a name that is no command is answered here: the same one line instead of click's usage text."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = super().get_command(ctx, name)
        return found if found is not None else _no_such_command(name, self.list_commands(ctx))


def _no_such_command(name: str, known: list[str]) -> click.Command:
    def fail() -> None:
        ctx = click.get_current_context()
        close = difflib.get_close_matches(name, known)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise OneLineUsageError(click.UsageError(f"No such command {name!r}.{hint}", ctx.parent))

    return click.Command(name, callback=fail, add_help_option=False, hidden=True,
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
