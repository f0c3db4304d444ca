"""``@task``: Celery's task API and retry semantics over RQ.

    @task(queue="low", autoretry_for=(SMTPException,), retry_backoff=True, max_retries=5)
    def send_email(message_id: int): ...

    send_email.delay(42)                       # enqueue now
    send_email.apply_async((42,), countdown=60)
    send_email.apply((42,))                    # run inline now, retries included
    send_email(42)                             # a plain call
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from flask import current_app

from itsm.dbtypes import utcnow
from jobs import enqueue, registry, runtime
from jobs.backoff import backoff_factor, exponential_backoff
from jobs.exceptions import MaxRetriesExceededError, Retry, TaskArgumentError
from jobs.request import JobHandle, Request, current

DEFAULT_TIME_LIMIT = 30 * 60
DEFAULT_SOFT_TIME_LIMIT = 25 * 60
DEFAULT_RESULT_TTL = 24 * 3600
DEFAULT_FAILURE_TTL = 90 * 24 * 3600
# The furthest a job may be put off (countdown or eta): ten years, leap days included. Beyond, a date
# overflows somewhere (timedelta, datetime.max in another zone) long before it could ever run.
MAX_DELAY = timedelta(days=3653)


def check_json(args: tuple, kwargs: dict, task_name: str) -> None:
    try:
        json.dumps([list(args), kwargs], allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TaskArgumentError(
            f"{task_name}: arguments must be plain JSON values (ids, strings, numbers, lists, dicts), not {err}"
        ) from None


def resolve_eta(countdown: float | None, eta: datetime | None, now: datetime) -> datetime | None:
    """When to run: None for now. A negative, non-finite or over-10-years countdown and an eta over
    10 years ahead are errors; an eta in the past means now."""
    if countdown is not None and eta is not None:
        raise ValueError("give countdown or eta, not both")
    if countdown is not None:
        if not math.isfinite(countdown):
            raise ValueError(f"countdown must be a number of seconds, got {countdown}")
        if countdown < 0:
            raise ValueError(f"countdown must be 0 or more seconds, got {countdown}")
        if countdown > MAX_DELAY.total_seconds():
            raise ValueError(f"countdown must be at most 10 years ({MAX_DELAY.total_seconds():.0f} seconds), "
                             f"got {countdown:g}")
        return now + timedelta(seconds=countdown) if countdown > 0 else None
    if eta is not None:
        if eta.tzinfo is None:
            raise ValueError("eta must be an aware datetime (with a time zone)")
        if eta - now > MAX_DELAY:  # aware subtraction never overflows, unlike converting eta to UTC
            raise ValueError(f"eta must be at most 10 years ahead, got {eta.isoformat()}")
        return eta if eta > now else None
    return None


class Task:
    def __init__(self, fn: Callable, *, name: str | None = None, queue: str = "default", bind: bool = False,
                 autoretry_for: tuple = (), dont_autoretry_for: tuple = (),
                 retry_backoff: bool | int = False, retry_backoff_max: int = 600, retry_jitter: bool = True,
                 max_retries: int | None = 3, default_retry_delay: float = 180,
                 time_limit: int | None = None, soft_time_limit: int | None = None, acks_late: bool = True,
                 result_ttl: int = DEFAULT_RESULT_TTL, failure_ttl: int = DEFAULT_FAILURE_TTL,
                 on_failure: Callable | None = None) -> None:
        self.fn = fn
        self.name = name or f"{fn.__module__}.{fn.__qualname__}"
        self.queue = queue
        self.bind = bind
        self.autoretry_for = tuple(autoretry_for)
        self.dont_autoretry_for = tuple(dont_autoretry_for)
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.max_retries = max_retries
        self.default_retry_delay = default_retry_delay
        self.time_limit = time_limit or DEFAULT_TIME_LIMIT
        self.soft_time_limit = soft_time_limit if soft_time_limit is not None else (
            DEFAULT_SOFT_TIME_LIMIT if time_limit is None else None)
        if self.soft_time_limit and self.soft_time_limit >= self.time_limit:
            raise ValueError(f"{self.name}: soft_time_limit must be below time_limit")
        self.acks_late = acks_late
        self.result_ttl = result_ttl
        self.failure_ttl = failure_ttl
        self.on_failure = on_failure
        functools.update_wrapper(self, fn)
        registry.register(self)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # -- running -------------------------------------------------------------------------
    @property
    def request(self) -> Request:
        return current.get() or Request(task=self.name)

    def run(self, *args, **kwargs):
        return self.fn(self, *args, **kwargs) if self.bind else self.fn(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        """A plain call: runs now in this process, no queue, no audit."""
        token = current.set(Request(task=self.name, args=args, kwargs=kwargs, called_directly=True))
        try:
            return self.run(*args, **kwargs)
        finally:
            current.reset(token)

    def autoretry_countdown(self, retries: int) -> float | None:
        """Celery's autoretry delay for retry number ``retries``; None means default_retry_delay."""
        if not self.retry_backoff:
            return None
        return exponential_backoff(backoff_factor(self.retry_backoff), retries, self.retry_backoff_max,
                                   self.retry_jitter)

    def retry(self, exc: BaseException | None = None, countdown: float | None = None,
              eta: datetime | None = None, max_retries: int | None = None):
        """Stop this attempt and run again later; after the last retry re-raise ``exc``."""
        request = self.request
        if request.called_directly:
            raise exc or Retry(None, 0)
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries + 1 > limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}]: it already retried {request.retries} time(s) "
                f"(max_retries={limit})")
        if eta is not None:
            countdown = max(0.0, (eta - utcnow()).total_seconds())
        elif countdown is None:
            countdown = self.default_retry_delay
        if countdown < 0:
            raise ValueError("countdown must be 0 or more seconds")
        raise Retry(exc, countdown)

    # -- enqueueing ----------------------------------------------------------------------
    def delay(self, *args, **kwargs) -> JobHandle:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable | None = None, kwargs: dict | None = None, countdown: float | None = None,
                    eta: datetime | None = None, queue: str | None = None, job_id: str | None = None) -> JobHandle:
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        check_json(args, kwargs, self.name)
        if current_app.config["JOBS_EAGER"]:
            resolve_eta(countdown, eta, utcnow())  # same validation as a real enqueue
            job_id = job_id or uuid.uuid4().hex
            return JobHandle(job_id, self.name, "inline", None, self.apply(args, kwargs, job_id=job_id))
        return enqueue.enqueue(self, args, kwargs, queue=queue or self.queue,
                               when=resolve_eta(countdown, eta, utcnow()), job_id=job_id)

    def apply_many(self, calls: Iterable[tuple[Iterable, dict]], queue: str | None = None) -> list[str]:
        """Enqueue many calls of this task in one round trip; returns their job ids."""
        prepared = []
        for args, kwargs in calls:
            args, kwargs = tuple(args or ()), dict(kwargs or {})
            check_json(args, kwargs, self.name)
            prepared.append((args, kwargs))
        if current_app.config["JOBS_EAGER"]:
            return [self.apply_async(a, k).id for a, k in prepared]
        return enqueue.enqueue_many(self, prepared, queue=queue or self.queue)

    def apply(self, args: Iterable | None = None, kwargs: dict | None = None, job_id: str | None = None):
        """Run inline now, retries included (without waiting, as Celery's eager mode); return or raise."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        check_json(args, kwargs, self.name)
        return runtime.run_inline(self, args, kwargs, job_id or uuid.uuid4().hex)


def task(fn: Callable | None = None, **options) -> Task | Callable[[Callable], Task]:
    """Declare a background task; usable as ``@task`` or ``@task(...)``."""
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)
