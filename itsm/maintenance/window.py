"""A maintenance window around work that must run with no writes (a restore): switch maintenance mode on,
wait (bounded) for the requests and jobs already running, run the work, and lift it again, also when the
work fails. A process that dies inside the window leaves the flag on: the safe side."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from flask import Flask, current_app

from itsm import maintenance
from itsm.maintenance import MaintenanceError, inflight

ON_TIMEOUT = ("abandon", "keep", "proceed")


def since(state: maintenance.State, app: Flask | None = None) -> str:
    """When it was switched, in TIME_ZONE."""
    if state.since is None:
        return "an unknown time"
    zone = (app or current_app).config["TIME_ZONE"]
    return f"{state.since.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S} {zone}"


class Window:
    """``with Window(...):`` runs its body once nothing is in flight; ``outcome`` says how it ended."""

    def __init__(self, by: str, message: str, wait: float, on_timeout: str = "abandon",
                 echo: Callable[[str], None] = print, app: Flask | None = None) -> None:
        if on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be one of {ON_TIMEOUT}")
        self.by, self.message, self.wait, self.on_timeout, self.echo = by, message, wait, on_timeout, echo
        self.app = app or current_app._get_current_object()
        self.was_on = False
        self.entered = False
        self.lifted: bool | None = None
        self.kept_for: str | None = None

    def __enter__(self) -> Window:
        before = maintenance.current(self.app)
        self.was_on = before.on
        if self.was_on:
            self.echo(f"Maintenance mode is already on (since {since(before, self.app)}, by {before.by}); it stays on "
                      "afterwards.")
        else:
            maintenance.switch_on(self.by, self.message, app=self.app)  # MaintenanceError without Redis
            self.echo("Maintenance mode is on: the web answers 503, workers take no new job, the scheduler waits.")
        self.entered = True
        try:
            running = inflight.wait_until_idle(
                maintenance.redis_for(self.app), self.wait,
                progress=lambda r: self.echo(f"Waiting for {r.describe()} to finish ..."))
        except Exception as err:
            self._lift(keep=False)
            raise MaintenanceError(f"cannot tell what is still running ({err}); nothing was changed"
                                   f"{self.outcome()}") from None
        if running.total:
            what = f"{running.describe()} still running after {self.wait:g} s"
            if self.on_timeout == "proceed":
                self.echo(f"Going ahead with {what} (--on-timeout proceed): their writes may be lost.")
            else:
                self._lift(keep=self.on_timeout == "keep")
                raise MaintenanceError(f"{what}; nothing was changed{self.outcome()}")
        else:
            self.echo("Nothing in flight.")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # A failure that left the work half done (a database partly restored) keeps the app closed.
        self.kept_for = getattr(exc, "keep_maintenance", None)
        self._lift(keep=bool(self.kept_for))

    def _lift(self, keep: bool) -> None:
        if self.lifted is not None:
            return
        if self.was_on or keep:
            self.lifted = False
            return
        maintenance.switch_off(f"end of: {self.by}", app=self.app)  # MaintenanceError: the operator must know
        self.lifted = True

    def outcome(self) -> str:
        """How maintenance mode was left, for the operator's last line."""
        if not self.entered or self.lifted is None:
            return ""
        if self.lifted:
            return "; maintenance mode was lifted"
        if self.was_on:
            return "; maintenance mode stays on, as it was before"
        if self.kept_for:
            return f"; maintenance mode stays on ({self.kept_for}): `flask maintenance off` lifts it"
        return "; maintenance mode stays on (--on-timeout keep): `flask maintenance off` lifts it"
