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
from rq import worker_registration
from rq.exceptions import StopRequested
from rq.worker import SimpleWorker

from itsm.extensions import db, worker_redis
from jobs import audit, dbconn, gate, hooks, recovery, runtime, softlimit
from jobs.logctx import job_context, rq_level

log = logging.getLogger("jobs.worker")
KILL_GRACE_SECONDS = 30
RECYCLE_EXIT = 75  # a worker process that reached --max-jobs
RUNNING_AFTER_SECONDS = 1.0  # a job still running this long gets its "running" audit row


class Watchdog(threading.Thread):
    """One thread per worker process, for the job running in it: heartbeats (so a dead worker is
    noticed in seconds), the soft time limit, and a last-resort kill past the hard limit."""

    def __init__(self, worker: ItsmWorker) -> None:
        super().__init__(daemon=True, name="watchdog")
        self.worker = worker
        self.cond = threading.Condition()
        self.job = None
        self.started = 0.0
        self.next_beat = 0.0
        self.soft_deadline: float | None = None
        self.running_row: dict | None = None
        self.running_deadline: float | None = None

    def begin(self, job) -> None:
        with self.cond:
            self.job, self.started = job, time.monotonic()
            self.next_beat = self.started + self.worker.heartbeat_seconds
            self.cond.notify()

    def end(self) -> None:
        with self.cond:
            self.job, self.soft_deadline = None, None
            self.running_row = self.running_deadline = None

    def announce(self, row: dict) -> None:
        """Write the attempt's "running" audit row if it is still running after a moment."""
        with self.cond:
            self.running_row, self.running_deadline = row, time.monotonic() + RUNNING_AFTER_SECONDS
            self.cond.notify()

    def arm_soft(self, seconds: float) -> None:
        with self.cond:
            self.soft_deadline = time.monotonic() + seconds
            self.cond.notify()

    def disarm_soft(self) -> None:
        with self.cond:
            self.soft_deadline = None

    def run(self) -> None:
        while True:
            with self.cond:
                while self.job is None:
                    self.cond.wait()
                now = time.monotonic()
                due = min(d for d in (self.next_beat, self.soft_deadline, self.running_deadline) if d is not None)
                if due > now:
                    self.cond.wait(due - now)
                    continue
                job, started = self.job, self.started
                fire_soft = self.soft_deadline is not None and now >= self.soft_deadline
                if fire_soft:
                    self.soft_deadline = None
                running_row = None
                if self.running_deadline is not None and now >= self.running_deadline:
                    running_row, self.running_row, self.running_deadline = self.running_row, None, None
                beat = now >= self.next_beat
                if beat:
                    self.next_beat = now + self.worker.heartbeat_seconds
            if fire_soft:
                softlimit.signal_main_thread()
            if running_row is not None:
                self.worker.write_running(running_row)
            if beat:
                self.worker.beat(job, started)


class ItsmWorker(SimpleWorker):
    """A SimpleWorker that keeps its heartbeat during long jobs, so a dead worker is noticed in seconds."""

    heartbeat_seconds = 5
    jobs_done = 0
    watchdog: Watchdog | None = None
    app: Flask | None = None

    def get_heartbeat_ttl(self, job) -> int:
        # Short: the watchdog renews it while the job runs; a SIGKILLed worker's job expires fast.
        return self.heartbeat_seconds * 3

    def run_maintenance_tasks(self):
        # Once a warm shutdown has stopped RQ's scheduler process, RQ's maintenance would start a new one.
        # That process inherits the worker's handler, which drops a second signal within a second, so the
        # stop sent to it at teardown could be lost and the worker would wait for it forever.
        if self._stop_requested:
            return
        super().run_maintenance_tasks()
        if self.app is not None:
            try:
                recovery.maybe_recover(self.app, self.connection, self.name)
            except Exception as err:
                # A stop signal raises StopRequested wherever the idle worker is, a query included; the
                # aborted query's rollback then fails and hides it. The stop goes on, not the pass.
                if _caused_by_stop(err):
                    raise StopRequested() from None
                log.exception("could not look for queued jobs that Redis lost")

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        """RQ's heartbeat, which also keeps the worker registered: after Redis lost its data, RQ's own only
        writes ``last_heartbeat`` into a bare hash outside the worker sets, and no one sees the worker."""
        if pipeline is not None:  # RQ's pipelines: its busy heartbeat writes serialize() back if the hash was gone
            super().heartbeat(timeout, pipeline)
            worker_registration.register(self, pipeline)
            return
        with self.connection.pipeline(transaction=False) as pipe:  # one round trip, as RQ's own is two
            super().heartbeat(timeout, pipe)
            worker_registration.register(self, pipe)
            pipe.hexists(self.key, "birth")
            registered = pipe.execute()[-1]
        if not registered:
            log.warning("worker %s: its registration was gone from Redis; registering again", self.name)
            self.connection.hset(self.key, mapping=self.serialize())

    def serialize(self) -> dict:
        # With the state and the current job: a registration written again is complete.
        data = super().serialize()
        data["state"] = self.get_state()
        if self.execution is not None:
            data["current_job"] = self.execution.job_id
        return data

    def start_watchdog(self) -> Watchdog:
        self.watchdog = Watchdog(self)
        self.watchdog.start()
        return self.watchdog

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        # Maintenance mode: no job is taken while it is on (jobs.gate).
        return gate.dequeue(self, super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def execute_job(self, job, queue):
        watchdog = self.watchdog or self.start_watchdog()
        watchdog.begin(job)
        task_name = job.args[0] if job.args else job.func_name
        try:
            with job_context(task_name, job.id):
                super().execute_job(job, queue)
        finally:
            self.jobs_done += 1
            watchdog.end()
            gate.finished(self, job)

    def write_running(self, row: dict) -> None:
        try:
            with self.app.app_context():
                audit.record_running(row)
        except Exception:
            log.exception("could not record a running job in the audit")

    def beat(self, job, started: float) -> None:
        if job.timeout and job.timeout > 0 and time.monotonic() - started > job.timeout + KILL_GRACE_SECONDS:
            # The hard limit's exception did not stop it (stuck outside Python): end the process;
            # the supervisor starts a new one and the job is handled as abandoned.
            log.critical("job %s ignored its hard time limit of %ss; killing worker %s", job.id, job.timeout,
                         self.name)
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            if self.execution is not None:
                self.maintain_heartbeats(job)
        except Exception:
            log.exception("heartbeat failed")


def _child(app: Flask, queues: list[str], burst: bool, max_jobs: int | None, loglevel: str, slot: int) -> int:
    """Body of one worker process (after fork)."""
    # Connections opened by the parent must never be used here (SQLAlchemy's fork recipe).
    with app.app_context():
        db.engine.dispose(close=False)
    dbconn.keep_connections(async_commit=app.config["JOBS_AUDIT_ASYNC_COMMIT"])
    for hook in hooks.worker_start:  # e.g. the mail feature keeps its SMTP connections open
        hook(app)
    heartbeat = max(1, int(app.config["JOBS_HEARTBEAT_SECONDS"]))
    ItsmWorker.heartbeat_seconds = heartbeat
    connection = worker_redis(app)
    worker = ItsmWorker(
        queues, connection=connection, name=f"{socket.gethostname()}.{os.getpid()}.{slot}",
        worker_ttl=max(10, heartbeat * 6), job_monitoring_interval=heartbeat,
        maintenance_interval=max(1, int(app.config["JOBS_MAINTENANCE_SECONDS"])),
        exception_handlers=[lambda job, *exc: runtime.handle_abandoned(app, job, *exc)],
    )
    worker.app = app
    watchdog = worker.start_watchdog()
    softlimit.install_signal_handler(watchdog)
    runtime.set_worker_app(app, announce_running=watchdog.announce)
    worker.work(burst=burst, max_jobs=max_jobs, with_scheduler=True,
                logging_level=rq_level(logging.getLevelName(loglevel.upper())))
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


def _caused_by_stop(err: BaseException | None) -> bool:
    while err is not None:
        if isinstance(err, StopRequested):
            return True
        err = err.__cause__ or err.__context__
    return False

