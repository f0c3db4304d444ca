"""Putting tasks on RQ queues, with a queued JobRun row for each."""

from __future__ import annotations

import uuid
from datetime import datetime

from redis.exceptions import RedisError
from rq import Retry as RQRetry
from rq.job import JobStatus

from jobs import audit
from jobs.connection import get_queue, unavailable
from jobs.task import JobHandle, Task


def _job_options(task: Task, args: tuple, kwargs: dict, job_id: str) -> dict:
    return {
        "args": (task.name, list(args), kwargs),
        "timeout": task.time_limit,
        "result_ttl": task.result_ttl,
        "failure_ttl": task.failure_ttl,
        "description": f"{task.name}({audit.summarize_args(args, kwargs)})",
        "job_id": job_id,
        # Late acknowledgement: if the worker dies mid-run, RQ's abandoned-job cleanup requeues it.
        # Each attempt rewrites this from the retries it has left (see jobs.runtime).
        "retry": RQRetry(max=1) if task.acks_late and task.max_retries != 0 else None,
    }


def enqueue(task: Task, args: tuple, kwargs: dict, *, queue: str, when: datetime | None,
            job_id: str | None) -> JobHandle:
    from jobs.runtime import run

    job_id = job_id or uuid.uuid4().hex
    rq_queue = get_queue(queue)
    options = _job_options(task, args, kwargs, job_id)
    try:
        if when is None:
            rq_queue.enqueue_call(run, **options)
        else:
            job = rq_queue.create_job(run, status=JobStatus.SCHEDULED, **options)
            rq_queue.schedule_job(job, when)
    except RedisError as err:
        raise unavailable(err) from None
    audit.record_enqueued([{"job_id": job_id, "attempt": 1, "task_name": task.name, "queue": queue,
                            "args_summary": audit.summarize_args(args, kwargs), "scheduled_for": when}])
    return JobHandle(job_id, task.name, queue, when)


def enqueue_many(task: Task, calls: list[tuple[tuple, dict]], *, queue: str) -> list[str]:
    from jobs.runtime import run

    rq_queue = get_queue(queue)
    ids = [uuid.uuid4().hex for _ in calls]
    datas = [rq_queue.prepare_data(run, **_job_options(task, args, kwargs, job_id))
             for job_id, (args, kwargs) in zip(ids, calls, strict=True)]
    try:
        with rq_queue.connection.pipeline() as pipe:
            rq_queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    except RedisError as err:
        raise unavailable(err) from None
    audit.record_enqueued([
        {"job_id": job_id, "attempt": 1, "task_name": task.name, "queue": queue,
         "args_summary": audit.summarize_args(args, kwargs)}
        for job_id, (args, kwargs) in zip(ids, calls, strict=True)
    ])
    return ids
