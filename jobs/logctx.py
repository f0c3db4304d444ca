"""Stamp the running job's task name and id on every log line (``%(job)s``)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar

_job: ContextVar[str] = ContextVar("itsm_job_log", default="-")
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job)s] %(message)s"


@contextmanager
def job_context(task_name: str, job_id: str):
    token = _job.set(f"{task_name} {job_id}")
    try:
        yield
    finally:
        _job.reset(token)


class JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job = _job.get()
        return True


def handler() -> logging.Handler:
    """A stderr handler whose lines carry the job (FORMAT)."""
    stream = logging.StreamHandler()
    stream.addFilter(JobFilter())
    stream.setFormatter(logging.Formatter(FORMAT))
    return stream


def install(level: int) -> None:
    """One handler on the root logger whose lines carry the job (worker processes)."""
    root = logging.getLogger()
    root.handlers[:] = [handler()]
    root.setLevel(logging.WARNING)
    for name in ("itsm", "jobs"):
        logging.getLogger(name).setLevel(level)
    for name in ("rq.worker", "rq.scheduler", "rq_scheduler.scheduler"):
        logging.getLogger(name).setLevel(rq_level(level))


def rq_level(level: int) -> int:
    """RQ writes several INFO lines per job, ours one: RQ's show from DEBUG, else from WARNING."""
    return level if level <= logging.DEBUG else max(level, logging.WARNING)
