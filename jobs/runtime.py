"""Running one attempt of a task: the RQ entry point, inline runs, retries and the audit."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context
from rq import get_current_job
from rq.exceptions import AbandonedJobError

from itsm.dbtypes import utcnow
from itsm.extensions import db, redis_master_since
from jobs import audit, hooks, registry
from jobs.exceptions import Retry, UnknownTaskError
from jobs.logctx import job_context
from jobs.request import Request, current
from jobs.softlimit import soft_time_limit

if TYPE_CHECKING:
    from jobs.task import Task

log = logging.getLogger("jobs.runtime")
_worker_app: Flask | None = None
_failure_hooks: list = []
_announce_running = None  # set by a worker process: writes the "running" row if the job takes a while

ATTEMPT_FIELD = "itsm_attempt"
RETRY_BASE_FIELD = "itsm_retry_base"


def set_worker_app(app: Flask, announce_running=None) -> None:
    """A worker process creates its app once and every job runs in it."""
    global _worker_app, _announce_running
    _worker_app, _announce_running = app, announce_running


def on_final_failure(hook) -> None:
    """Register ``hook(task_name, job_id, exc, args, kwargs)``, called once a job has failed for good
    (once, however many apps register it)."""
    if hook not in _failure_hooks:
        _failure_hooks.append(hook)


STATUS = {"success": "succeeded", "retry": "retrying", "failure": "failed"}  # outcome kind -> audit status


@dataclass
class Outcome:
    kind: str  # "success", "retry" or "failure"
    result: Any = None
    exc: BaseException | None = None
    countdown: float = 0.0


def attempt(task: Task, args: tuple, kwargs: dict, request: Request) -> Outcome:
    """Run the body once and classify what happened, with Celery's autoretry rules."""
    token = current.set(request)
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
        current.reset(token)


def final_failure(task: Task | None, task_name: str, job_id: str, exc: BaseException, args, kwargs) -> None:
    """Run the task's on_failure and the global hooks; a broken hook is logged, never raised."""
    hooks = ([task.on_failure] if task and task.on_failure else []) + _failure_hooks
    for hook in hooks:
        try:
            hook(task_name, job_id, exc, args, kwargs)
        except Exception:
            log.exception("on_failure hook %r failed for %s[%s]", hook, task_name, job_id)


def run(task_name: str, args: list, kwargs: dict) -> Any:
    """The function every RQ job calls: one attempt of ``task_name``."""
    app = _worker_app or current_app._get_current_object()
    job = get_current_job()
    with app.app_context(), job_context(task_name, job.id if job else "-"):
        try:
            return _run_in_worker(task_name, tuple(args), dict(kwargs), job)
        finally:
            db.session.remove()


def _run_in_worker(task_name: str, args: tuple, kwargs: dict, job) -> Any:
    started = utcnow()
    try:
        task = registry.get(task_name)
    except UnknownTaskError as exc:
        task, unknown = None, exc
    attempt_number, retries = _begin_attempt(job, task)
    base = {"job_id": job.id, "attempt": attempt_number, "task_name": task_name, "queue": job.origin,
            "args_summary": audit.summarize_args(args, kwargs), "worker": job.worker_name or socket.gethostname(),
            "started_at": started}
    found = audit.already_ran(job.id, attempt_number, retry=retries > 0) if _may_have_run(job, attempt_number) \
        else None
    if found is not None:
        reason, has_row = found
        # Not run. An attempt with a row of its own keeps it (a skipped row would overwrite the real outcome);
        # one without gets a skipped row. The copy goes from Redis (no result kept), so the recovery pass
        # enqueues whatever the audit still has queued for the job.
        job.retries_left, job.result_ttl = 0, 0
        if not has_row:
            audit.record_outcome(audit.row(**base, status="skipped", finished_at=utcnow(),
                                           error_message=f"not run again: {reason}"))
        log.warning("not run again: %s (Redis handed it out again: a failover's lost writes, or a duplicate)",
                    reason)
        return None
    if task is None:
        job.retries_left = 0
        audit.record_outcome(audit.row(**base, status="failed", finished_at=utcnow(), exc=unknown))
        final_failure(None, task_name, job.id, unknown, args, kwargs)
        raise unknown
    claims = hooks.claims
    periodic = claims.key(job.meta) if claims is not None else None
    if periodic is not None:
        reason = claims.claim(periodic, job.id, attempt_number)
        if reason is not None:
            job.retries_left = 0
            audit.record_outcome(audit.row(**base, status="skipped", finished_at=utcnow(), error_message=reason))
            log.info("skipped: %s", reason)
            return None
    # A fast job writes its audit row once, at the end; one still running after a moment is shown
    # as running by the worker's watchdog (see jobs.worker).
    if _announce_running is not None:
        _announce_running(audit.row(**base, status="running"))
    else:
        audit.record_running(audit.row(**base, status="running"))
    request = Request(id=job.id, retries=retries, attempt=attempt_number, task=task_name, args=args,
                      kwargs=kwargs, queue=job.origin, is_eager=False, called_directly=False)
    outcome = attempt(task, args, kwargs, request)
    finished = utcnow()
    if outcome.kind != "success":
        # What the failed attempt left uncommitted ends here, before the firing, the audit and the failure
        # hooks write: a hook's commit must not commit it with its own rows, a session left unusable (a lost
        # connection) must not break the hooks, and on SQLite its write lock would block the audit's write.
        db.session.remove()

    if periodic is not None:
        claims.finish(periodic, job.id, STATUS[outcome.kind])
    retry_at = finished + timedelta(seconds=outcome.countdown)
    call = audit.payload(args, kwargs, (job.meta or {}).get("periodic")) if outcome.kind == "retry" else None
    _record(outcome, base, finished, retry_at, call=call, retries=retries + 1)
    if outcome.kind == "success":
        log.info("succeeded in %.3fs (attempt %d)", (finished - started).total_seconds(), attempt_number)
        return outcome.result
    if outcome.kind == "retry":
        log.warning("retry %d in %.1fs: %r", retries + 1, outcome.countdown, outcome.exc)
        # RQ's own retry path schedules the job again under the same id, without sleeping here.
        job.retries_left, job.retry_intervals = 1, [outcome.countdown]
        raise outcome.exc if outcome.exc is not None else RuntimeError("retry requested")
    job.retries_left = 0
    log.error("failed for good on attempt %d: %r", attempt_number, outcome.exc)
    final_failure(task, task_name, job.id, outcome.exc, args, kwargs)
    raise outcome.exc


# A job created up to this long before the Redis master took over (clocks of two machines) is checked too.
TAKEOVER_MARGIN_SECONDS = 5.0


def _may_have_run(job, attempt_number: int) -> bool:
    """Whether the audit must be asked before this attempt runs: a retry (rare; a copy that Redis forgot had
    ended would run again), or a job created before the master Redis Sentinel names took over (a failover:
    the promoted replica may lack the last writes, and hand out again jobs that ran). Other jobs, the
    common case, cost no read."""
    if attempt_number > 1:
        return True
    since = redis_master_since(job.connection)
    if since is None or job.created_at is None:
        return False
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    return created.timestamp() < since + TAKEOVER_MARGIN_SECONDS


def _record(outcome: Outcome, base: dict, finished: datetime, retry_at: datetime, call: dict | None = None,
            retries: int | None = None) -> None:
    """The attempt's audit row; a retry also gets the next attempt's queued row, in one transaction (with
    ``call`` and ``retries``, what enqueues it again if Redis loses it)."""
    failed = outcome.kind != "success"
    retry = outcome.kind == "retry"
    row = audit.row(**base, status=STATUS[outcome.kind], finished_at=finished,
                    result=None if failed else outcome.result, exc=outcome.exc if failed else None,
                    error_message="retry requested" if retry and outcome.exc is None else None)
    next_attempt = audit.queued_row(
        job_id=base["job_id"], attempt=base["attempt"] + 1, task_name=base["task_name"], queue=base["queue"],
        args_summary=base["args_summary"], scheduled_for=retry_at, call=call, retries=retries) if retry else None
    audit.record_outcome(row, next_attempt=next_attempt)


# One round trip per attempt: count it (lost attempts count too) and tell RQ's abandoned-job
# cleanup whether a dead worker's job may run again (late acknowledgement, retries left).
# The counts live in the job's hash, and a copy in its meta: if Redis loses the hash between an attempt's
# end and RQ saving the retry, RQ writes the job back from memory (meta included, these fields not), and
# the copy carries the counts on so the retry is not taken for a first attempt.
_BEGIN = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[5])
redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[6])
local attempt = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local base = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '0')
local retries = attempt - 1 - base
local left = 0
if ARGV[3] == '1' and (tonumber(ARGV[4]) < 0 or retries + 1 <= tonumber(ARGV[4])) then left = 1 end
redis.call('HSET', KEYS[1], 'retries_left', left, 'retry_intervals', '[0]')
return {attempt, retries, left, base}
"""
_scripts: dict[int, Any] = {}


def _begin_attempt(job, task: Task | None) -> tuple[int, int]:
    script = _scripts.get(id(job.connection))
    if script is None:
        script = _scripts[id(job.connection)] = job.connection.register_script(_BEGIN)
    acks_late = task is not None and task.acks_late
    max_retries = -1 if task is None or task.max_retries is None else task.max_retries
    meta = job.meta if isinstance(job.meta, dict) else {}
    attempt_number, retries, left, base = script(keys=[job.key], args=[
        ATTEMPT_FIELD, RETRY_BASE_FIELD, "1" if acks_late else "0", max_retries,
        int(meta.get(ATTEMPT_FIELD, 0)), int(meta.get(RETRY_BASE_FIELD, 0))])
    job.retries_left, job.retry_intervals = int(left), [0]
    # In memory only: saved with the job when RQ schedules its retry.
    job.meta = {**meta, ATTEMPT_FIELD: int(attempt_number), RETRY_BASE_FIELD: int(base)}
    return int(attempt_number), int(retries)


def run_inline(task: Task, args: tuple, kwargs: dict, job_id: str) -> Any:
    """``Task.apply``: every attempt now, in this process, audited like a worker run."""
    if not has_app_context():
        raise RuntimeError("Task.apply needs an app context")
    summary = audit.summarize_args(args, kwargs)
    retries = 0
    with job_context(task.name, job_id):
        while True:
            number = retries + 1
            base = {"job_id": job_id, "attempt": number, "task_name": task.name, "queue": "inline",
                    "args_summary": summary, "worker": "inline", "started_at": utcnow()}
            audit.record_running(audit.row(**base, status="running"))
            request = Request(id=job_id, retries=retries, attempt=number, task=task.name, args=args,
                              kwargs=kwargs, queue="inline", is_eager=True, called_directly=False)
            outcome = attempt(task, args, kwargs, request)
            finished = utcnow()
            _record(outcome, base, finished, retry_at=finished)  # no waiting, as Celery's eager mode
            if outcome.kind == "success":
                return outcome.result
            if outcome.kind == "retry":
                retries += 1
                continue
            final_failure(task, task.name, job_id, outcome.exc, args, kwargs)
            raise outcome.exc


def handle_abandoned(app: Flask, job, exc_type, exc_value, traceback) -> bool:
    """RQ exception handler: a job whose worker died (AbandonedJobError) is marked lost in the audit."""
    if exc_type is not AbandonedJobError and not isinstance(exc_value, AbandonedJobError):
        return True  # ordinary failures were audited by the job itself
    task_name = job.args[0] if job.args else job.func_name
    will_retry = bool(job.retries_left and job.retries_left > 0)
    with app.app_context():
        attempt_number = int(job.connection.hget(job.key, ATTEMPT_FIELD) or 1)
        ended = audit.outcome(job.id, attempt_number)
        if ended is not None:
            # Not abandoned: it ended, and Redis forgot (a failover's promoted replica lacked the end). Its
            # audit row and claim stay as they are; a copy RQ enqueues again is not run (_may_have_run).
            log.warning("job %s[%s] attempt %d looked abandoned, but it already %s; not marked lost", task_name,
                        job.id, attempt_number, ended)
            return True
        reason = "The worker running this job stopped before it finished" + (
            "; it will run again (late acknowledgement)." if will_retry else "; no retries left.")
        audit.record_lost(job_id=job.id, attempt=attempt_number, task_name=task_name, queue=job.origin,
                          reason=reason)
        claims = hooks.claims
        periodic = claims.key(job.meta) if claims is not None else None
        if periodic is not None:
            claims.finish(periodic, job.id, "lost")
        log.warning("job %s[%s] abandoned by its worker; %s", task_name, job.id,
                    "requeued" if will_retry else "moved to failed")
        if not will_retry:
            try:
                task = registry.get(task_name)
            except UnknownTaskError:
                task = None
            args = job.args[1] if len(job.args) > 1 else []
            kwargs = job.args[2] if len(job.args) > 2 else {}
            final_failure(task, task_name, job.id, exc_value or AbandonedJobError(), args, kwargs)
    return True
