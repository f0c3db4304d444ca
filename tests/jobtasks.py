"""Tasks used by the job-runtime tests; workers import them through JOBS_IMPORTS."""

from __future__ import annotations

import time

from flask import current_app
from redis import Redis

from jobs.exceptions import SoftTimeLimitExceeded
from jobs.task import task


def r() -> Redis:
    return Redis.from_url(current_app.config["REDIS_URL"])


def wait_for_go(client: Redis, key: str) -> None:
    """Hold the job until the test sets ``<key>:go`` (at most a minute)."""
    deadline = time.monotonic() + 60
    while not client.exists(f"{key}:go"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key}:go never came")
        time.sleep(0.02)


class Flaky(ConnectionError):
    pass


@task(name="t.add", queue="default")
def add(a, b):
    return a + b


@task(name="t.flaky", autoretry_for=(Flaky,), default_retry_delay=0, max_retries=5)
def flaky(key: str, failures: int):
    """Fails ``failures`` times, then succeeds."""
    calls = r().incr(key)
    if calls <= failures:
        raise Flaky(f"call {calls} fails")
    return calls


@task(name="t.always_fails", autoretry_for=(Flaky,), default_retry_delay=0, max_retries=2)
def always_fails(key: str):
    r().incr(key)
    raise Flaky("still broken")


@task(name="t.filtered", autoretry_for=(Exception,), dont_autoretry_for=(ValueError,), default_retry_delay=0)
def filtered(key: str, error: str):
    r().incr(key)
    raise {"value": ValueError, "key": KeyError}[error](f"{error} error")


@task(name="t.backoff", autoretry_for=(Flaky,), retry_backoff=1, retry_backoff_max=2, retry_jitter=False,
      max_retries=3)
def backoff(key: str):
    r().rpush(key, time.time())
    raise Flaky("backing off")


@task(name="t.jitter", autoretry_for=(Flaky,), retry_backoff=2, retry_backoff_max=3, retry_jitter=True,
      max_retries=3)
def jitter(key: str):
    r().rpush(key, time.time())
    raise Flaky("jittering")


@task(name="t.bound", bind=True, max_retries=5)
def bound(self, key: str, until: int):
    r().rpush(key, f"{self.request.id}:{self.request.retries}")
    if self.request.retries < until:
        self.retry(countdown=1)
    return self.request.retries


@task(name="t.no_more", bind=True, max_retries=1)
def no_more(self):
    self.retry(countdown=0)


@task(name="t.hard_limit", time_limit=2, max_retries=0)
def hard_limit(seconds: float):
    time.sleep(seconds)


@task(name="t.soft_limit", time_limit=10, soft_time_limit=1, max_retries=0)
def soft_limit(key: str):
    try:
        for _ in range(200):
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        r().set(key, "cleaned up")
        raise
    return "finished"


@task(name="t.slow", queue="default", max_retries=3, acks_late=True, time_limit=120, soft_time_limit=100)
def slow(key: str, seconds: float):
    attempt = r().incr(key + ":started")
    time.sleep(seconds if attempt == 1 else 0)
    r().incr(key + ":completed")
    return attempt


@task(name="t.gated", queue="default", max_retries=0, time_limit=120, soft_time_limit=100)
def gated(key: str):
    """Sets ``<key>:started``, then waits for ``<key>:go`` before it returns."""
    client = r()
    client.set(key + ":started", 1)
    wait_for_go(client, key)
    return "done"


@task(name="t.slow_early_ack", queue="default", max_retries=3, acks_late=False, time_limit=120,
      soft_time_limit=100)
def slow_early_ack(key: str, seconds: float):
    r().incr(key + ":started")
    time.sleep(seconds)


def record_failure(task_name, job_id, exc, args, kwargs):
    r().rpush("failures", f"{task_name}:{job_id}:{type(exc).__name__}")


@task(name="t.hooked", max_retries=0, on_failure=record_failure)
def hooked():
    raise RuntimeError("boom")


@task(name="t.count", max_retries=0, time_limit=60, soft_time_limit=50)
def count(key: str, seconds: float = 0):
    """Records each run's job id (a periodic firing's id names its tick)."""
    from rq import get_current_job

    job = get_current_job()
    r().rpush(key, job.id if job else "inline")
    time.sleep(seconds)


# What the tasks below need besides the imports above.
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.exc import InterfaceError, OperationalError  # noqa: E402


@task(name="t.gated_rows", autoretry_for=(OperationalError, InterfaceError), default_retry_delay=0, max_retries=3,
      time_limit=120, soft_time_limit=100)
def gated_rows(key: str, count: int) -> int:
    """Writes ``count`` tickets titled ``"<key> <n>"`` in one transaction, one INSERT each. Once they are all
    written (uncommitted) it sets ``<key>:inside`` to ``"<attempt>:<PostgreSQL backend pid or 0>"`` and waits
    for ``<key>:go`` before committing; ``<key>:committed`` counts the commits that succeeded."""
    from itsm.board.models import BoardColumn
    from itsm.extensions import db
    from itsm.tickets.models import Ticket

    client = r()
    attempt = gated_rows.request.attempt
    column_id = db.session.scalar(sa.select(sa.func.min(BoardColumn.id)))
    for n in range(count):
        db.session.execute(sa.insert(Ticket).values(title=f"{key} {n}", column_id=column_id))
    backend = db.session.scalar(sa.text("SELECT pg_backend_pid()")) if db.engine.dialect.name == "postgresql" else 0
    client.set(f"{key}:inside", f"{attempt}:{backend}")
    wait_for_go(client, key)
    db.session.commit()
    client.incr(f"{key}:committed")
    return count


@task(name="t.gated_rows_no_retry", max_retries=0, time_limit=120, soft_time_limit=100)
def gated_rows_no_retry(key: str, count: int) -> int:
    """``t.gated_rows`` without retries: an error before its commit fails it for good."""
    return gated_rows.fn(key, count)


@task(name="t.rows_then_crash", max_retries=0)
def rows_then_crash(key: str, count: int):
    """Writes ``count`` tickets titled ``"<key> <n>"`` in its session, then fails before committing."""
    from itsm.board.models import BoardColumn
    from itsm.extensions import db
    from itsm.tickets.models import Ticket

    column_id = db.session.scalar(sa.select(sa.func.min(BoardColumn.id)))
    for n in range(count):
        db.session.add(Ticket(title=f"{key} {n}", column_id=column_id))
    db.session.flush()
    raise RuntimeError(f"{key}: crashed before its commit")


def _record_run(key: str, mark: str) -> None:
    """One ticket titled ``"<key> <mark>"`` per execution, committed: a run twice shows as two tickets."""
    from itsm.board.models import BoardColumn
    from itsm.extensions import db
    from itsm.tickets.models import Ticket

    column_id = db.session.scalar(sa.select(sa.func.min(BoardColumn.id)))
    db.session.execute(sa.insert(Ticket).values(title=f"{key} {mark}", column_id=column_id))
    db.session.commit()


@task(name="t.record", max_retries=3, time_limit=60, soft_time_limit=50)
def record(key: str, n: int) -> int:
    """Records each execution in the database (late acknowledgement, the default)."""
    _record_run(key, str(n))
    return n


@task(name="t.record_early_ack", acks_late=False, max_retries=3, time_limit=60, soft_time_limit=50)
def record_early_ack(key: str, n: int) -> int:
    """``t.record`` without late acknowledgement: it may not run twice, so a lost job is not run again."""
    _record_run(key, str(n))
    return n


@task(name="t.retry_once", bind=True, max_retries=3, time_limit=60, soft_time_limit=50)
def retry_once(self, key: str, countdown: float) -> int:
    """Records ``"<key> <job id>:<attempt>"``; the first attempt then retries after ``countdown`` seconds."""
    _record_run(key, f"{self.request.id}:{self.request.attempt}")
    if self.request.attempt == 1:
        self.retry(countdown=countdown)
    return self.request.attempt


@task(name="t.record_job", max_retries=3, time_limit=60, soft_time_limit=50)
def record_job(key: str) -> str:
    """Records ``"<key> <job id>"`` per execution: a periodic firing's job id names its tick."""
    job_id = record_job.request.id
    _record_run(key, job_id)
    return job_id
