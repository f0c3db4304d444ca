"""Exceptions of the job runtime, named as in Celery where Celery has one."""

from __future__ import annotations


class JobsError(Exception):
    """Base class; the message is meant for people."""


class UnknownTaskError(JobsError):
    pass


class UnknownQueueError(JobsError):
    pass


class TaskArgumentError(JobsError, TypeError):
    """A job was given something that is not a plain JSON value (ids, not ORM objects)."""


class JobsUnavailableError(JobsError):
    """Redis could not be reached, so the job could not be enqueued."""


class MaxRetriesExceededError(JobsError):
    """``self.retry()`` was called after the last allowed retry, without an exception to re-raise."""


class SoftTimeLimitExceeded(Exception):  # noqa: N818  (Celery's name)
    """Raised inside a job when its soft time limit passes, so it can clean up before the hard limit."""


class Retry(Exception):  # noqa: N818  (Celery's name)
    """Raised by ``self.retry()``: stop this attempt and run again after ``countdown`` seconds."""

    def __init__(self, exc: BaseException | None = None, countdown: float = 0.0) -> None:
        super().__init__(f"retry in {countdown:g}s" + (f": {exc!r}" if exc else ""))
        self.exc = exc
        self.countdown = countdown


class JobLostError(JobsError):
    """Redis lost a queued job of a task that may not run twice: it is marked lost, not enqueued again."""
