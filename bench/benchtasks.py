"""The no-op task that bench/jobs.py runs through our runtime (workers load it via JOBS_IMPORTS)."""

from __future__ import annotations

from jobs.task import task


@task(name="bench.noop", queue="default")
def noop(i: int = 0) -> None:
    """Does nothing: what is left is the runtime's own cost per job."""
    return None
