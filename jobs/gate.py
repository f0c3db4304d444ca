"""Maintenance mode in the job runtime: workers take no job and the scheduler enqueues no tick while it is on.

A worker finishes the job it is running; the jobs queued meanwhile wait in Redis, in order, and run once
maintenance is lifted. A worker that was already blocked waiting on its queues when maintenance began
may still pop a job: it counts the job in flight and reads the flag in one round trip (see
``jobs.hooks.pause``) and, finding the flag on, puts the job back at the head of its queue.
"""

from __future__ import annotations

import logging
import time

from rq.intermediate_queue import IntermediateQueue
from rq.worker import WorkerStatus

from jobs import hooks

log = logging.getLogger("jobs.gate")
POLL_SECONDS = 0.5


def _on(app) -> bool:
    if hooks.pause is None:  # no maintenance mode registered (a bare runtime)
        return False
    try:
        return hooks.pause.is_on(app)
    except Exception as err:  # noqa: BLE001 -- neither Redis nor the database answers: take nothing yet
        log.warning("cannot read the maintenance flag, taking no job for now: %s", err)
        return True


def _wait_while_on(worker) -> None:
    """Heartbeats go on (the worker is paused, not dead); a SIGTERM still stops it (RQ raises StopRequested)."""
    paused = False
    while not worker._stop_requested and _on(worker.app):
        if not paused:
            log.warning("maintenance mode: %s takes no job until it is lifted", worker.name)
            worker.set_state(WorkerStatus.SUSPENDED)
            paused = True
        worker.heartbeat()
        time.sleep(POLL_SECONDS)
    if paused:
        log.warning("maintenance mode lifted: %s takes jobs again", worker.name)


def _give_back(job, queue) -> None:
    """Undo the dequeue: the job goes back to the head of its queue (and out of RQ's intermediate list, which
    a worker listening on a single queue moves it to)."""
    pipe = queue.connection.pipeline()
    pipe.lrem(IntermediateQueue.get_intermediate_queue_key(queue.key), 1, job.id)
    queue.push_job_id(job.id, pipeline=pipe, at_front=True)
    pipe.execute()
    log.warning("maintenance mode: job %s went back to the head of queue %s", job.id, queue.name)


def dequeue(worker, dequeue_job, timeout, max_idle_time):
    """``ItsmWorker.dequeue_job_and_maintain_ttl``: wait out maintenance mode, then take a job only if the
    flag is still off once the job is counted in flight."""
    pause = hooks.pause
    while True:
        _wait_while_on(worker)
        if worker._stop_requested:
            return None
        result = dequeue_job(timeout, max_idle_time)
        if result is None:
            return None
        if pause is None:
            return result
        job, queue = result
        task = job.args[0] if job.args else job.func_name
        try:
            on = pause.begin(worker.app, worker.name, job.id, str(task), worker.connection)
        except Exception as err:  # noqa: BLE001 -- cannot tell: treat as on, the job waits
            log.warning("cannot read the maintenance flag: %s", err)
            on = True
        if not on:
            return result
        _give_back(job, queue)


def finished(worker, job) -> None:
    """The job is no longer in flight (ItsmWorker.execute_job, whatever happened to it)."""
    if hooks.pause is not None:
        hooks.pause.end(worker.app, worker.name, job.id, worker.connection)


class Pause:
    """The scheduler's check, once per pass: while maintenance mode is on it enqueues no tick (ticks missed
    meanwhile follow their misfire policy afterwards, as after any downtime)."""

    def __init__(self, app) -> None:
        self.app = app
        self.paused = False

    def active(self) -> bool:
        on = _on(self.app)
        if on != self.paused:
            log.warning("maintenance mode %s: the scheduler %s", "on" if on else "lifted",
                        "enqueues no tick until it is lifted" if on else "resumes")
            self.paused = on
        return on
