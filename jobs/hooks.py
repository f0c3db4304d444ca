"""Where the job runtime calls into the features. The runtime imports no feature: ``create_app`` registers
what it needs here, as it registers ``runtime.on_final_failure``. Each hook is process-wide and set once
(registering the same one again, from a second app, changes nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask


class AttemptClaims(Protocol):
    """Once-per-tick claims around a periodic job's attempt (``itsm.schedules.firing``)."""

    def key(self, meta: dict | None) -> Any | None:
        """The claim's key from a job's meta, or None for a job that needs no claim."""

    def claim(self, key: Any, job_id: str, attempt: int) -> str | None:
        """None to go ahead, or why this attempt is skipped."""

    def finish(self, key: Any, job_id: str, status: str) -> None:
        """The attempt ended with ``status`` (succeeded, retrying, failed, lost)."""


class Pause(Protocol):
    """Maintenance mode as the workers and the scheduler see it (``itsm.maintenance``)."""

    def is_on(self, app: Flask) -> bool:
        """Raises when it cannot tell (the caller then takes no work)."""

    def begin(self, app: Flask, owner: str, job_id: str, task: str, connection) -> bool:
        """Count the job in flight and return whether maintenance is on, in one round trip."""

    def end(self, app: Flask, owner: str, job_id: str, connection) -> None:
        """The job is no longer in flight."""


claims: AttemptClaims | None = None
pause: Pause | None = None
worker_start: list[Callable[[Flask], None]] = []  # in each worker process, before its first job
scheduler: Callable[[Flask], int] | None = None  # what ``flask worker --with-scheduler`` runs beside the workers


def register(*, attempt_claims: AttemptClaims | None = None, maintenance: Pause | None = None,
             on_worker_start: Callable[[Flask], None] | None = None,
             run_scheduler: Callable[[Flask], int] | None = None) -> None:
    global claims, pause, scheduler
    if attempt_claims is not None:
        claims = attempt_claims
    if maintenance is not None:
        pause = maintenance
    if on_worker_start is not None and on_worker_start not in worker_start:
        worker_start.append(on_worker_start)
    if run_scheduler is not None:
        scheduler = run_scheduler
