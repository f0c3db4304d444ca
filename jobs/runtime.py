"""Running one attempt of a task: the RQ entry point, inline runs, retries and the audit."""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, has_app_context
from rq import get_current_job

from itsm.dbtypes import utcnow
from jobs import audit, firing, registry
from jobs.exceptions import Retry, UnknownTaskError
from jobs.logctx import job_context
from jobs.softlimit import soft_time_limit
from jobs.task import Request, Task, _current

log = logging.getLogger("jobs.runtime")
_worker_app: Flask | None = None
_failure_hooks: list = []

ATTEMPT_FIELD = "itsm_attempt"
RETRY_BASE_FIELD = "itsm_retry_base"


def set_worker_app(app: Flask) -> None:
    """A worker process creates its app once and every job runs in it."""
    global _worker_app
    _worker_app = app


def on_final_failure(hook) -> None:
    """Register ``hook(task_name, job_id, exc, args, kwargs)``, called once a job has failed for good."""
    _failure_hooks.append(hook)


@dataclass
class Outcome:
    kind: str  # "success", "retry" or "failure"
    result: Any = None
    exc: BaseException | None = None
    countdown: float = 0.0


def attempt(task: Task, args: tuple, kwargs: dict, request: Request) -> Outcome:
    """Run the body once and classify what happened, with Celery's autoretry rules."""
    token = _current.set(request)
    try:
        with soft_time_limit(task.soft_time_limit):
            return Outcome("success", result=task.run(*args, **kwargs))
    except Retry as retry:
        return Outcome("retry", exc=retry.exc, countdown=retry.countdown)
    except task.dont_autoretry_for as exc:
        return Outcome("failure", exc=exc)
    except task.autoretry_for as exc:
        try:
            task.retry(exc=exc, countdown=task.autoretry_countdown(request.retries))
        except Retry as retry:
            return Outcome("retry", exc=exc, countdown=retry.countdown)
        except Exception as final:  # the original exception, or MaxRetriesExceededError
            return Outcome("failure", exc=final)
    except Exception as exc:
        return Outcome("failure", exc=exc)
    finally:
        _current.reset(token)


def final_failure(task: Task | None, task_name: str, job_id: str, exc: BaseException, args, kwargs) -> None:
    """Run the task's on_failure and the global hooks; a broken hook is logged, never raised."""
    hooks = ([task.on_failure] if task and task.on_failure else []) + _failure_hooks
    for hook in hooks:
        try:
            hook(task_name, job_id, exc, args, kwargs)
        except Exception:
            log.exception("on_failure hook %r failed for %s[%s]", hook, task_name, job_id)


def _late_ack_retries(task: Task, retries: int) -> tuple[int, list[float]]:
    """What RQ should do if this attempt's worker dies: retry (acks_late) while retries remain."""
    may_retry = task.acks_late and (task.max_retries is None or retries + 1 <= task.max_retries)
    if not may_retry:
        return 0, [0]
    countdown = task.autoretry_countdown(retries)
    return 1, [countdown if countdown is not None else 0]


def run(task_name: str, args: list, kwargs: dict) -> Any:
    """The function every RQ job calls: one attempt of ``task_name``."""
    app = _worker_app or current_app._get_current_object()
    job = get_current_job()
    with app.app_context(), job_context(task_name, job.id if job else "-"):
        try:
            return _run_in_worker(task_name, tuple(args), dict(kwargs), job)
        finally:
            from itsm.extensions import db

            db.session.remove()


def _run_in_worker(task_name: str, args: tuple, kwargs: dict, job) -> Any:
    started = utcnow()
    attempt_number, retry_base = _next_attempt(job)
    retries = attempt_number - 1 - retry_base
    summary = audit.summarize_args(args, kwargs)
    queue = job.origin
    audit.record_start(job_id=job.id, attempt=attempt_number, task_name=task_name, queue=queue,
                       args_summary=summary, worker=job.worker_name or socket.gethostname(), started_at=started)
    try:
        task = registry.get(task_name)
    except UnknownTaskError as exc:
        job.retries_left = 0
        audit.record_failure(job.id, attempt_number, started, exc)
        final_failure(None, task_name, job.id, exc, args, kwargs)
        raise
    periodic = firing.periodic_meta(job)
    if periodic is not None:
        reason = firing.claim(*periodic, job.id, attempt_number)
        if reason is not None:
            job.retries_left = 0
            audit.record_skipped(job.id, attempt_number, started, reason)
            log.info("skipped %s: %s", task_name, reason)
            return None
    retries_left, intervals = _late_ack_retries(task, retries)
    job.retries_left, job.retry_intervals = retries_left, intervals
    job.connection.hset(job.key, mapping={"retries_left": retries_left, "retry_intervals": json.dumps(intervals)})
    request = Request(id=job.id, retries=retries, attempt=attempt_number, task=task_name, args=args,
                      kwargs=kwargs, queue=queue, is_eager=False, called_directly=False)
    outcome = attempt(task, args, kwargs, request)

    if periodic is not None:
        firing.finish(*periodic, job.id, {"success": "succeeded", "retry": "retrying"}.get(outcome.kind, "failed"))
    if outcome.kind == "success":
        audit.record_success(job.id, attempt_number, started, outcome.result)
        return outcome.result
    if outcome.kind == "retry":
        retry_at = utcnow() + timedelta(seconds=outcome.countdown)
        audit.record_retry(job_id=job.id, attempt=attempt_number, started_at=started, exc=outcome.exc,
                           task_name=task_name, queue=queue, args_summary=summary, retry_at=retry_at)
        log.warning("retry %d of %s in %.1fs: %r", retries + 1, task_name, outcome.countdown, outcome.exc)
        # RQ's own retry path schedules the job again under the same id, without sleeping here.
        job.retries_left, job.retry_intervals = 1, [outcome.countdown]
        raise outcome.exc if outcome.exc is not None else RuntimeError("retry requested")
    job.retries_left = 0
    audit.record_failure(job.id, attempt_number, started, outcome.exc)
    final_failure(task, task_name, job.id, outcome.exc, args, kwargs)
    raise outcome.exc


def _next_attempt(job) -> tuple[int, int]:
    """Count attempts in Redis, so one lost with its worker still counts."""
    with job.connection.pipeline() as pipe:
        pipe.hincrby(job.key, ATTEMPT_FIELD, 1)
        pipe.hget(job.key, RETRY_BASE_FIELD)
        attempt_number, base = pipe.execute()
    return int(attempt_number), int(base or 0)


def run_inline(task: Task, args: tuple, kwargs: dict, job_id: str) -> Any:
    """``Task.apply``: every attempt now, in this process, audited like a worker run."""
    if not has_app_context():
        raise RuntimeError("Task.apply needs an app context")
    summary = audit.summarize_args(args, kwargs)
    retries = 0
    with job_context(task.name, job_id):
        while True:
            number = retries + 1
            started = utcnow()
            audit.record_start(job_id=job_id, attempt=number, task_name=task.name, queue="inline",
                               args_summary=summary, worker="inline", started_at=started)
            request = Request(id=job_id, retries=retries, attempt=number, task=task.name, args=args,
                              kwargs=kwargs, queue="inline", is_eager=True, called_directly=False)
            outcome = attempt(task, args, kwargs, request)
            if outcome.kind == "success":
                audit.record_success(job_id, number, started, outcome.result)
                return outcome.result
            if outcome.kind == "retry":
                audit.record_retry(job_id=job_id, attempt=number, started_at=started, exc=outcome.exc,
                                   task_name=task.name, queue="inline", args_summary=summary, retry_at=utcnow())
                retries += 1
                continue
            audit.record_failure(job_id, number, started, outcome.exc)
            final_failure(task, task.name, job_id, outcome.exc, args, kwargs)
            raise outcome.exc


def handle_abandoned(app: Flask, job, exc_type, exc_value, traceback) -> bool:
    """RQ exception handler: a job whose worker died (AbandonedJobError) is marked lost in the audit."""
    from rq.exceptions import AbandonedJobError

    if exc_type is not AbandonedJobError and not isinstance(exc_value, AbandonedJobError):
        return True  # ordinary failures were audited by the job itself
    task_name = job.args[0] if job.args else job.func_name
    will_retry = bool(job.retries_left and job.retries_left > 0)
    with app.app_context():
        reason = "The worker running this job stopped before it finished" + (
            "; it will run again (late acknowledgement)." if will_retry else "; no retries left.")
        audit.record_lost(job.id, reason)
        periodic = firing.periodic_meta(job)
        if periodic is not None:
            firing.finish(*periodic, job.id, "lost")
        log.warning("job %s[%s] abandoned by its worker; %s", task_name, job.id,
                    "requeued" if will_retry else "moved to failed")
        if not will_retry:
            try:
                task = registry.get(task_name)
            except Exception:
                task = None
            args = job.args[1] if len(job.args) > 1 else []
            kwargs = job.args[2] if len(job.args) > 2 else {}
            final_failure(task, task_name, job.id, exc_value or AbandonedJobError(), args, kwargs)
    return True
