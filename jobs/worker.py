"""``flask worker``: a small pool of RQ SimpleWorker processes under one supervisor.

Why this shape: RQ's default worker forks a new process for every job, which caps
throughput at ~80 jobs/s. A SimpleWorker runs jobs in its own process (no fork per
job); the supervisor restarts a process that a crashed or killed job took down, and
recycles processes after ``--max-jobs``. Each process creates nothing per job: the
app, its engine pool and its Redis client live as long as the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time

from flask import Flask
from rq.worker import SimpleWorker, WorkerStatus

from jobs import registry, runtime, softlimit
from jobs.connection import worker_redis
from jobs.logctx import job_context

log = logging.getLogger("jobs.worker")
KILL_GRACE_SECONDS = 30
RECYCLE_EXIT = 75  # a worker process that reached --max-jobs


class ItsmWorker(SimpleWorker):
    """A SimpleWorker that keeps its heartbeat during long jobs, so a dead worker is noticed in seconds."""

    heartbeat_seconds = 5
    jobs_done = 0

    def get_heartbeat_ttl(self, job) -> int:
        # Short: the beat thread renews it while the job runs; a SIGKILLed worker's job expires fast.
        return self.heartbeat_seconds * 3

    def execute_job(self, job, queue):
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop, time.monotonic()), daemon=True,
                                name="heartbeat")
        beat.start()
        task_name = job.args[0] if job.args else job.func_name
        try:
            with job_context(task_name, job.id):
                super().execute_job(job, queue)
        finally:
            self.jobs_done += 1
            stop.set()
            beat.join()

    def _beat(self, job, stop: threading.Event, started: float) -> None:
        limit = (job.timeout or 0) + KILL_GRACE_SECONDS
        while not stop.wait(self.heartbeat_seconds):
            if job.timeout and job.timeout > 0 and time.monotonic() - started > limit:
                # The hard limit's exception did not stop it (stuck outside Python): end the process;
                # the supervisor starts a new one and the job is handled as abandoned.
                log.critical("job %s ignored its hard time limit of %ss; killing worker %s",
                             job.id, job.timeout, self.name)
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                if self.execution is not None:
                    self.maintain_heartbeats(job)
            except Exception:
                log.exception("heartbeat failed")


def _child(app: Flask, queues: list[str], burst: bool, max_jobs: int | None, loglevel: str, slot: int) -> int:
    """Body of one worker process (after fork)."""
    from itsm.extensions import db

    # Connections opened by the parent must never be used here (SQLAlchemy's fork recipe).
    with app.app_context():
        db.engine.dispose(close=False)
    runtime.set_worker_app(app)
    softlimit.install_signal_handler()
    registry.load(app.config["JOBS_IMPORTS"])
    heartbeat = max(1, int(app.config["JOBS_HEARTBEAT_SECONDS"]))
    ItsmWorker.heartbeat_seconds = heartbeat
    connection = worker_redis(app)
    worker = ItsmWorker(
        queues, connection=connection, name=f"{socket.gethostname()}.{os.getpid()}.{slot}",
        worker_ttl=max(10, heartbeat * 6), job_monitoring_interval=heartbeat,
        maintenance_interval=max(1, int(app.config["JOBS_MAINTENANCE_SECONDS"])),
        exception_handlers=[lambda job, *exc: runtime.handle_abandoned(app, job, *exc)],
    )
    worker.work(burst=burst, max_jobs=max_jobs, with_scheduler=True, logging_level=loglevel)
    if max_jobs and worker.jobs_done >= max_jobs:
        return RECYCLE_EXIT  # stopped only to be replaced, also in burst mode
    return 0


class Supervisor:
    """Forks the worker processes, restarts the ones that die, and stops them all on SIGTERM."""

    def __init__(self, app: Flask, queues: list[str], concurrency: int, burst: bool, max_jobs: int | None,
                 loglevel: str, extra: dict | None = None) -> None:
        self.app, self.queues, self.concurrency = app, queues, concurrency
        self.burst, self.max_jobs, self.loglevel = burst, max_jobs, loglevel
        self.extra = extra or {}  # name -> callable(app), e.g. the periodic scheduler
        self.children: dict[int, str] = {}
        self.stopping = False
        self.last_start: dict[str, float] = {}

    def _spawn(self, slot: str) -> None:
        # Don't restart a crashing process in a tight loop.
        wait = 1.0 - (time.monotonic() - self.last_start.get(slot, 0.0))
        if wait > 0:
            time.sleep(wait)
        self.last_start[slot] = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if slot in self.extra:
                    code = self.extra[slot](self.app) or 0
                else:
                    code = _child(self.app, self.queues, self.burst, self.max_jobs, self.loglevel, int(slot))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("worker process %s crashed", slot)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = slot
        log.info("started %s process %s (pid %d)", "worker" if slot.isdigit() else slot, slot, pid)

    def _signal(self, signum, frame) -> None:
        if not self.stopping:
            log.warning("%s: finishing current jobs, then stopping", signal.Signals(signum).name)
            self.stopping = True
            sig = signal.SIGTERM
        else:
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            sig = signal.SIGINT  # RQ's cold shutdown
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for slot in [str(i) for i in range(self.concurrency)] + list(self.extra):
            self._spawn(slot)
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            done = self.stopping or (self.burst and code == 0 and slot.isdigit())
            if code == RECYCLE_EXIT:
                log.info("process %s (pid %d) reached --max-jobs; starting a fresh one", slot, pid)
            elif code != 0:
                log.error("process %s (pid %d) exited with %s%s", slot, pid, code, "" if done else "; restarting")
            if not done:
                self._spawn(slot)
            elif (self.burst and not self.stopping and self.children
                  and not any(s.isdigit() for s in self.children.values())):
                self._signal(signal.SIGTERM, None)  # burst: workers are done, stop the extras too
        return 0


def worker_status_name(worker) -> str:
    state = worker.get_state()
    return state.value if isinstance(state, WorkerStatus) else str(state)
