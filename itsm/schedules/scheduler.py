"""``flask scheduler``: database schedules, fired through rq-scheduler, exactly once per tick.

rq-scheduler keeps the timers (a Redis sorted set) and moves due jobs to their queues.
Its known weaknesses are handled here: ticks are computed by us in each schedule's own
time zone (``itsm.schedules.ticks``), anchored so intervals never drift, handed to rq-scheduler as
one-shot entries whose ids derive from (periodic task, tick) so restarts and Redis loss
never duplicate or drop one, scored on whole seconds rounded *up* so nothing runs early,
and claimed in the database when they run (``itsm.schedules.firing``), so a lapsed lock or a
second scheduler cannot fire a tick twice.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus
from rq_scheduler import Scheduler
from sqlalchemy.exc import SQLAlchemyError

from itsm.dbtypes import utcnow
from itsm.extensions import db, worker_redis
from itsm.schedules import evaluation, firing, service, ticks
from itsm.schedules.models import PeriodicTask, ScheduleState
from jobs import gate, registry
from jobs.exceptions import JobsError
from jobs.liveness import HEARTBEAT_KEY, SCHEDULERS_KEY, scheduler_beat
from jobs.runtime import run

log = logging.getLogger("jobs.scheduler")
RECONCILED_KEY = "itsm:scheduler:reconciled"  # when any scheduler last reconciled (the time it planned for)
ENTRY_PREFIX = "periodic-"
GRACE_SECONDS = 60.0  # a tick later than this (the scheduler was down) is "missed": see the misfire policy
RECHECK_HANDED_SECONDS = 3600  # a tick handed to a queue but never claimed is re-sent if Redis lost it
WATCHING_SECONDS = 5.0  # passes closer than this are one running scheduler: ticks due between them are late, not missed
SAFETY_RELOAD_SECONDS = 30.0  # reconcile at least this often, even when nothing seems to have changed
RECHECK_UNCLAIMED_SECONDS = 1.0  # while a handed-over tick is not claimed, look for it this often
FRESH_SECONDS = 1.0  # an entry due longer ago than this was not handed over in time: reconcile judges it first


def entry_id(task_id: int, tick: datetime) -> str:
    return f"{ENTRY_PREFIX}{task_id}-{int(round(tick.timestamp() * 1000))}"


def jitter_for(task_id: int, tick: datetime, jitter_seconds: int) -> float:
    """Deterministic per tick, so re-adding an entry after Redis loss keeps its time."""
    if not jitter_seconds:
        return 0.0
    return random.Random(f"{task_id}:{tick.isoformat()}").uniform(0, jitter_seconds)


def entry_time(task_id: int, tick: datetime, jitter_seconds: int) -> float:
    """The exact moment an entry is due (epoch seconds): its tick plus its jitter."""
    return tick.timestamp() + jitter_for(task_id, tick, jitter_seconds)


class PeriodicScheduler:
    def __init__(self, app: Flask, connection: Redis, poll: float = 0.2) -> None:
        self.app, self.connection, self.poll = app, connection, poll
        self.rq = Scheduler(connection=connection, interval=1, name=f"itsm.{socket.gethostname()}.{os.getpid()}")
        self.stop = threading.Event()
        self.version: int | None = None
        self.claimed: dict[int, datetime] = {}  # task id -> its last tick, known to be claimed by a worker
        self.invalid = evaluation.InvalidMarks(log)
        self.last_beat = 0.0
        self.watching_since: datetime | None = None  # the previous pass, while passes follow each other
        self.wake_at = 0.0  # epoch seconds: when a planned tick or expiry needs the next reconcile
        self.reconciled_at = -math.inf  # monotonic: the last reconcile (for the safety reload)
        self.pause = gate.Pause(app)  # maintenance mode

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        log.info("scheduler %s started", self.rq.name)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.beat()
                if not self.pause.active() and self.rq.acquire_lock():
                    try:
                        self.enqueue_due(since=time.time() - FRESH_SECONDS)  # what just came due: no waiting
                        with self.app.app_context():
                            self.refresh(utcnow())
                        self.enqueue_due()
                    finally:
                        self.rq.remove_lock()
            except (RedisError, SQLAlchemyError, OSError) as err:
                log.warning("scheduler pass failed, retrying: %s", err)
                with self.app.app_context():
                    db.session.rollback()
                self.stop.wait(1.0)
            self.stop.wait(self._until_next(started))
        self.connection.delete(HEARTBEAT_KEY, RECONCILED_KEY)  # what comes due from now on is missed
        self.connection.zrem(SCHEDULERS_KEY, self.rq.name)
        log.info("scheduler %s stopped", self.rq.name)
        return 0

    def enqueue_due(self, since: float | None = None) -> None:
        """Move due entries to their queues, comparing exact times: rq-scheduler's own
        ``enqueue_jobs`` compares whole seconds and would run a tick up to a second early.

        With ``since``, only entries due since then: one due longer ago was not handed over in time
        (the scheduler was stopped or paused), and reconcile first decides whether its tick was missed.
        """
        for job, due in self.rq.get_jobs(until=time.time(), with_times=True):
            if since is None or due.replace(tzinfo=UTC).timestamp() >= since:
                self.rq.enqueue_job(job)

    def _until_next(self, started: float) -> float:
        """Sleep until the earliest entry is due, but never longer than one poll."""
        wait = self.poll - (time.monotonic() - started)
        if self.pause.paused:  # due entries wait: do not spin on them
            return max(0.002, wait)
        try:
            first = self.connection.zrange(self.rq.scheduled_jobs_key, 0, 0, withscores=True)
        except RedisError:  # Redis is away: the next pass says so and retries (this must not end the loop)
            first = None
        if first:
            wait = min(wait, first[0][1] - time.time())
        return max(0.002, wait)

    def beat(self) -> None:
        now = time.time()
        if now - self.last_beat >= 1.0:
            scheduler_beat(self.connection, self.rq.name, now)
            self.last_beat = now

    # -- reconcile database rows into rq-scheduler entries ----------------------------------
    def refresh(self, now: datetime) -> None:
        """One pass of the loop: reconcile when something may have changed, else only say it still watches.

        Something may have changed when the schedules' version moved (database triggers bump it on every
        write to a definition, whatever wrote it), a planned tick or expiry has come (the next tick must be
        planned), a tick handed to a queue is not claimed yet (Redis may lose it), Redis lost our marker
        (emptied or restarted: the entries may be gone too), or the slow safety reload is due."""
        version = self._version()
        if version == self.version and now.timestamp() < self.wake_at \
                and time.monotonic() - self.reconciled_at < SAFETY_RELOAD_SECONDS \
                and self.connection.get(RECONCILED_KEY) is not None:
            db.session.rollback()  # end the read: nothing to do
            self.connection.set(RECONCILED_KEY, now.timestamp(), ex=3600)
            return
        if self.version is not None and version != self.version:
            log.debug("schedules changed (version %s -> %s)", self.version, version)
        self.reconcile(now, version)

    @staticmethod
    def _version() -> int | None:
        return db.session.scalar(db.select(ScheduleState.version).where(ScheduleState.id == 1))

    def reconcile(self, now: datetime, version: int | None = None) -> None:
        """Bring every row's plan and its rq-scheduler entries up to ``now``."""
        # The version read before the rows: an edit committed after it bumps it again and reloads next pass.
        self.version = self._version() if version is None else version
        self.watching_since = self._previous_pass(now)
        scheduled = {m.decode(): s for m, s in self.connection.zrange(self.rq.scheduled_jobs_key, 0, -1,
                                                                      withscores=True)}
        wanted: set[str] = set()
        wake = math.inf
        for row in db.session.scalars(db.select(PeriodicTask)).unique():
            try:
                wanted |= self._reconcile_row(row, now, scheduled)
                wake = min(wake, self._wake_for(row, now))
            except evaluation.NOT_THE_ROWS_FAULT:
                raise
            except Exception as err:  # a row no check foresaw (or a bug) is skipped, never the whole pass
                log.exception("periodic task %s could not be scheduled", row.name)
                self.invalid.mark(row, service.definition_hash(row), now, evaluation.reason_for(err))
        db.session.commit()
        self.wake_at, self.reconciled_at = wake, time.monotonic()
        self.connection.set(RECONCILED_KEY, now.timestamp(), ex=3600)
        stale = [m for m in scheduled if m.startswith(ENTRY_PREFIX) and m not in wanted]
        for member in stale:
            self.rq.cancel(member)
            self.connection.delete(Job.key_for(member))
        if stale:
            log.info("cancelled %d stale entr%s", len(stale), "y" if len(stale) == 1 else "ies")

    def _wake_for(self, row: PeriodicTask, now: datetime) -> float:
        """When this row next needs a pass (epoch seconds): its next entry is due, it expires, or a tick
        handed to a queue has not been claimed yet (checked again every RECHECK_UNCLAIMED_SECONDS)."""
        if not row.enabled:
            return math.inf
        wake = math.inf
        if row.next_tick_at is not None:
            wake = entry_time(row.id, row.next_tick_at, row.jitter_seconds)
        if row.expires is not None and row.expires > now:
            wake = min(wake, row.expires.timestamp())
        tick = row.last_tick_at
        if tick is not None and self.claimed.get(row.id) != tick:
            window = GRACE_SECONDS if row.misfire_policy == "skip" else RECHECK_HANDED_SECONDS
            if (now - tick).total_seconds() <= window:
                wake = min(wake, now.timestamp() + RECHECK_UNCLAIMED_SECONDS)
        return wake

    def _reconcile_row(self, row: PeriodicTask, now: datetime, scheduled: dict) -> set[str]:
        if not row.enabled or (row.expires is not None and row.expires <= now):
            row.next_tick_at = None  # re-enabling plans again from the last tick, by the misfire policy
            return set()
        digest = service.definition_hash(row)
        if self.invalid.still(row, digest):
            return set()
        try:
            task = registry.get(row.task)
        except JobsError:  # a row the code no longer supports: say so, keep the others running
            self.invalid.mark(row, digest, now, f"Its task {row.task!r} is not in this version's code.")
            return set()
        if not service.arguments_usable(row):
            self.invalid.mark(row, digest, now, "Its arguments are not a list, or its keyword arguments not an "
                                                "object. Edit it or disable it.")
            return set()
        try:
            fire_now = evaluation.evaluate(row, lambda spec: self._advance(row, spec, digest, now, scheduled))
        except evaluation.InvalidSchedule as err:  # its entries are cancelled as stale: it is skipped
            self.invalid.mark(row, digest, now, err.reason)
            return set()
        self.invalid.clear(row)
        wanted = set()
        for tick in fire_now:
            wanted.add(self._ensure_entry(row, task, tick, scheduled))
        if fire_now:
            row.last_tick_at = max(fire_now[-1], row.last_tick_at or fire_now[-1])
        if row.next_tick_at is not None:
            wanted.add(self._ensure_entry(row, task, row.next_tick_at, scheduled))
        resent = self._resend_if_lost(row, task, now, scheduled)
        if resent:
            wanted.add(resent)
        return wanted

    def _advance(self, row: PeriodicTask, spec: ticks.Spec, digest: str, now: datetime,
                 scheduled: dict) -> tuple[datetime, ...]:
        """Move the row's plan on to ``now``; returns the missed ticks to fire at once."""
        fire_now: tuple[datetime, ...] = ()
        if row.scheduled_hash != digest:
            # New or edited: its ticks count from when it was saved, never before. Ticks between then and
            # now (the scheduler was down, or slow to start) are missed like any downtime: the misfire
            # policy decides, so a one-off that came due meanwhile is not silently dropped.
            saved = min(row.date_changed or now, now)
            plan = self._plan(row, spec, saved, now)
            fire_now, row.next_tick_at = plan.fire_now, plan.pending
            row.scheduled_hash = digest
            self._log_missed(row, plan)
        elif row.next_tick_at is None:  # re-enabled (or a one-off already fired)
            if row.one_off and row.last_tick_at is not None:
                return ()
            plan = self._plan(row, spec, row.last_tick_at or now, now)
            fire_now, row.next_tick_at = plan.fire_now, plan.pending
            self._log_missed(row, plan)
        elif row.next_tick_at <= now and self._handed_over(row, row.next_tick_at, scheduled):
            row.last_tick_at = row.next_tick_at
            if row.one_off:
                row.next_tick_at = None
            else:
                plan = self._plan(row, spec, row.last_tick_at, now)
                fire_now, row.next_tick_at = plan.fire_now, plan.pending
                self._log_missed(row, plan)
        elif row.next_tick_at <= now and self._superseded(row, spec, now):
            # Its entry came due while no scheduler handed it over (stopped, paused) and a later tick is due
            # too: it is one of the missed ticks, and the misfire policy decides about it like the others.
            plan = self._plan(row, spec, row.next_tick_at - timedelta(microseconds=1), now)
            fire_now, row.next_tick_at = plan.fire_now, plan.pending
            self._log_missed(row, plan)
        return fire_now

    @staticmethod
    def _superseded(row: PeriodicTask, spec: ticks.Spec, now: datetime) -> bool:
        if entry_time(row.id, row.next_tick_at, row.jitter_seconds) > now.timestamp():
            return False  # its entry waits for its jitter: not late yet
        later = ticks.next_tick(spec, row.next_tick_at)
        return later is not None and later <= now

    def _previous_pass(self, now: datetime) -> datetime | None:
        """The previous pass of any scheduler, if it was a moment ago: then no scheduler was down since."""
        raw = self.connection.get(RECONCILED_KEY)
        previous = None if raw is None else datetime.fromtimestamp(float(raw), UTC)
        if previous is None or not 0 <= (now - previous).total_seconds() <= WATCHING_SECONDS:
            return None
        return previous

    def _plan(self, row: PeriodicTask, spec, after: datetime, now: datetime) -> ticks.Plan:
        return ticks.plan(spec, after, now, misfire=row.misfire_policy, grace=GRACE_SECONDS,
                          catchup_window=row.catchup_window_seconds, start=row.start_time, expires=row.expires,
                          live_since=self.watching_since)

    @staticmethod
    def _log_missed(row: PeriodicTask, plan: ticks.Plan) -> None:
        if plan.missed:
            log.warning("%s missed %d tick(s) while the scheduler was down or the task was disabled; "
                        "misfire policy %r fires %d now", row.name, plan.missed, row.misfire_policy,
                        len(plan.fire_now))

    def _handed_over(self, row: PeriodicTask, tick: datetime, scheduled: dict) -> bool:
        member = entry_id(row.id, tick)
        if member in scheduled:
            return False
        job_status = self.connection.hget(Job.key_for(member), "status")
        if job_status is not None and job_status.decode() != JobStatus.SCHEDULED.value:
            return True
        return firing.exists(row.id, tick)

    def _resend_if_lost(self, row: PeriodicTask, task, now: datetime, scheduled: dict) -> str | None:
        """A tick handed to a queue that Redis then lost (FLUSHDB, restart) before a worker claimed it.
        Once a worker has claimed the tick it is remembered, so later passes look nothing up."""
        tick = row.last_tick_at
        window = GRACE_SECONDS if row.misfire_policy == "skip" else RECHECK_HANDED_SECONDS
        if tick is None or self.claimed.get(row.id) == tick or (now - tick).total_seconds() > window:
            return None
        member = entry_id(row.id, tick)
        if member in scheduled:
            return member
        if firing.exists(row.id, tick):
            self.claimed[row.id] = tick
            return None
        if self.connection.exists(Job.key_for(member)):
            return None
        log.warning("%s: the tick of %s was lost from Redis before it ran; sending it again", row.name, tick)
        return self._ensure_entry(row, task, tick, scheduled)

    def _ensure_entry(self, row: PeriodicTask, task, tick: datetime, scheduled: dict) -> str:
        member = entry_id(row.id, tick)
        if member not in scheduled:
            due = entry_time(row.id, tick, row.jitter_seconds)
            self.rq.enqueue_at(
                datetime.fromtimestamp(due, UTC), run, row.task, list(row.args or []), dict(row.kwargs or {}),
                job_id=member, queue_name=row.queue or task.queue, timeout=task.time_limit,
                job_result_ttl=max(task.result_ttl, 86400),
                job_description=f"{row.task} [{row.name} @ {tick.isoformat()}]",
                meta={"periodic": {"id": row.id, "tick": tick.isoformat()}},
            )
            # rq-scheduler stores whole seconds; keep the exact time (enqueue_due compares it exactly).
            self.connection.zadd(self.rq.scheduled_jobs_key, {member: due}, xx=True)
            scheduled[member] = due
        return member


def run_scheduler(app: Flask) -> int:
    return PeriodicScheduler(app, worker_redis(app)).run()


def run_forked(app: Flask) -> int:
    """What ``flask worker --with-scheduler`` runs in a process of its own beside the workers."""
    with app.app_context():
        db.engine.dispose(close=False)  # forked: never reuse the parent's connections
    return run_scheduler(app)
