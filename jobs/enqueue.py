"""Putting tasks on RQ queues, with a queued JobRun row for each."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from rq import Retry as RQRetry
from rq.job import JobStatus

from itsm.dbtypes import utcnow
from jobs import audit
from jobs.connection import get_queue, unavailable
from jobs.request import JobHandle
from jobs.runtime import run

if TYPE_CHECKING:
    from jobs.task import Task


def job_options(task: Task, args: tuple, kwargs: dict, job_id: str, summary: str) -> dict:
    return {
        "args": (task.name, list(args), kwargs),
        "timeout": task.time_limit,
        "result_ttl": task.result_ttl,
        "failure_ttl": task.failure_ttl,
        "description": f"{task.name}({summary})",
        "job_id": job_id,
        # Late acknowledgement: if the worker dies mid-run, RQ's abandoned-job cleanup requeues it.
        # Each attempt rewrites this from the retries it has left (see jobs.runtime).
        "retry": RQRetry(max=1) if task.acks_late and task.max_retries != 0 else None,
    }


def _queued(task: Task, job_id: str, queue: str, summary: str, enqueued: datetime, args: tuple, kwargs: dict,
            when: datetime | None = None) -> dict:
    return {"job_id": job_id, "attempt": 1, "task_name": task.name, "queue": queue, "args_summary": summary,
            "created_at": enqueued, "enqueued_at": enqueued, "scheduled_for": when,
            "payload": audit.payload(args, kwargs), "retries": 0}


def enqueue(task: Task, args: tuple, kwargs: dict, *, queue: str, when: datetime | None,
            job_id: str | None) -> JobHandle:
    job_id = job_id or uuid.uuid4().hex
    rq_queue = get_queue(queue)
    summary = audit.summarize_args(args, kwargs)
    options = job_options(task, args, kwargs, job_id, summary)
    # Taken before the push: a fast worker may start the job before the queued row below is written.
    enqueued = utcnow()
    try:
        if when is None:
            rq_queue.enqueue_call(run, **options)
        else:
            job = rq_queue.create_job(run, status=JobStatus.SCHEDULED, **options)
            rq_queue.schedule_job(job, when)
    except RedisError as err:
        raise unavailable(err) from None
    audit.record_enqueued([_queued(task, job_id, queue, summary, enqueued, args, kwargs, when)])
    return JobHandle(job_id, task.name, queue, when)


def enqueue_many(task: Task, calls: list[tuple[tuple, dict]], *, queue: str) -> list[str]:
    rq_queue = get_queue(queue)
    jobs = [(uuid.uuid4().hex, audit.summarize_args(args, kwargs), args, kwargs) for args, kwargs in calls]
    datas = [rq_queue.prepare_data(run, **job_options(task, args, kwargs, job_id, summary))
             for job_id, summary, args, kwargs in jobs]
    enqueued = utcnow()
    try:
        with rq_queue.connection.pipeline() as pipe:
            rq_queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    except RedisError as err:
        raise unavailable(err) from None
    audit.record_enqueued([_queued(task, job_id, queue, summary, enqueued, args, kwargs)
                           for job_id, summary, args, kwargs in jobs])
    return [job_id for job_id, _, _, _ in jobs]
