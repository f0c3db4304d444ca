"""Small tasks for checking that the job runtime works end to end."""

from __future__ import annotations

import time

from jobs.task import task


@task(name="diagnostics.ping", queue="high", max_retries=0, time_limit=60)
def ping() -> str:
    """Answers "pong": enqueue it to see a worker pick work up."""
    return "pong"


@task(name="diagnostics.sleep", queue="low", max_retries=0, time_limit=3600, soft_time_limit=3500)
def sleep(seconds: float) -> float:
    """Sleeps; handy to watch a busy worker or a time limit."""
    time.sleep(seconds)
    return seconds
