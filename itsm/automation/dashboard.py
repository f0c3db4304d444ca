"""The automation dashboard's figures: every periodic task's state and 7-day record, recent failures,
queues and workers, the outbox and the backups.

Built to stay fast with a million job runs: every query walks an index over a bounded range (one
task's last week, the newest failures, the newest runs); nothing counts or sorts the whole table.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from markupsafe import Markup
from redis.exceptions import RedisError
from sqlalchemy import case, func, select

from itsm.backups.store import BackupError, list_backups
from itsm.config import redis_target
from itsm.extensions import db, redis_client, redis_node
from itsm.mail.models import EmailMessage, deferred
from itsm.schedules.describe import describe, next_runs, state_of
from itsm.schedules.lastrun import WEEK, LastRun, last_runs, week_stats
from itsm.schedules.models import PeriodicTask
from itsm.templating import chart_macro, show_time
from jobs import liveness
from jobs.models import JobRun

CHART_RUNS = 40  # the newest runs of each task drawn in its duration chart
FINAL = ("succeeded", "failed", "lost")


@dataclass
class TaskRow:
    task: PeriodicTask
    state: str  # healthy, failing, pending (runs, none finished), not run yet, late, disabled, invalid
    schedule: str
    next_run: datetime | None
    runs: int = 0
    succeeded: int = 0
    median: float | None = None
    recent: list = field(default_factory=list)  # (duration, status, finished_at), newest last
    last: LastRun | None = None  # the latest attempt (itsm.schedules.lastrun), whatever started it
    reason: str | None = None  # why an invalid task cannot be scheduled

    @property
    def success_rate(self) -> float | None:
        return None if not self.runs else self.succeeded / self.runs

    @property
    def chart(self) -> Markup:
        return duration_chart(self.task.name, self.recent)


def _median(name: str, since: datetime, runs: int) -> float | None:
    """The middle duration of the task's finished runs this week (one index range, one sort)."""
    if not runs:
        return None
    window = (JobRun.task_name == name, JobRun.created_at >= since, JobRun.status.in_(FINAL),
              JobRun.duration_seconds.is_not(None))
    if db.engine.dialect.name == "postgresql":
        return db.session.scalar(select(func.percentile_cont(0.5).within_group(JobRun.duration_seconds))
                                 .where(*window))
    values = db.session.scalars(select(JobRun.duration_seconds).where(*window)
                                .order_by(JobRun.duration_seconds).limit(2 - runs % 2).offset((runs - 1) // 2)).all()
    return statistics.fmean(values) if values else None


def _recent(name: str) -> list[JobRun]:
    return db.session.scalars(select(JobRun).where(JobRun.task_name == name, JobRun.status.in_(FINAL))
                              .order_by(JobRun.created_at.desc(), JobRun.id.desc()).limit(CHART_RUNS)).all()


def health(state: str, last: LastRun | None, finished: JobRun | None) -> str:
    """An on-time task's state from its newest finished run; never "healthy" before one succeeded."""
    if state != "on time":
        return state
    if finished is not None:
        return "healthy" if finished.status == "succeeded" else "failing"
    return "not run yet" if last is None else "pending"


def tasks(now: datetime) -> list[TaskRow]:
    periodic = db.session.scalars(select(PeriodicTask).order_by(PeriodicTask.name)).all()
    names = sorted({t.task for t in periodic})
    since = now - WEEK
    stats = week_stats(names, since)
    lasts = last_runs(periodic)
    medians: dict[str, float | None] = {}
    recents: dict[str, list[JobRun]] = {}
    for name in names:
        runs = stats.get(name, (0, 0))[0]
        medians[name] = _median(name, since, runs)
        recents[name] = _recent(name)
    rows = []
    for t in periodic:
        recent = recents.get(t.task, [])
        last = lasts[t.id]
        state, reason = state_of(t, now, last)
        state = health(state, last, recent[0] if recent else None)
        upcoming = next_runs(t, now, 1)
        runs, ok = stats.get(t.task, (0, 0))
        rows.append(TaskRow(task=t, state=state, schedule=describe(t), next_run=upcoming[0] if upcoming else None,
                            runs=runs, succeeded=ok, median=medians.get(t.task), last=last, reason=reason,
                            recent=[(r.duration_seconds or 0.0, r.status, r.finished_at) for r in reversed(recent)]))
    return rows


def recent_failures(limit: int = 10) -> list[JobRun]:
    # One index walk per status, merged here: an IN () would sort every failed run ever kept.
    found = []
    for status in ("failed", "lost"):
        found += db.session.scalars(select(JobRun).where(JobRun.status == status)
                                    .order_by(JobRun.created_at.desc(), JobRun.id.desc()).limit(limit)).all()
    return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]


def failures_since(since: datetime) -> int:
    return sum(db.session.scalar(select(func.count()).select_from(JobRun)
                                 .where(JobRun.status == status, JobRun.created_at >= since)) or 0
               for status in ("failed", "lost"))


@dataclass
class Outbox:
    waiting: dict[str, int]  # pending, deferred (tried, to be tried again), retrying, sending, failed
    sent_24h: int
    oldest_pending: datetime | None


def outbox(now: datetime) -> Outbox:
    statuses = ("pending", "deferred", "retrying", "sending", "failed")
    state = case((deferred(), "deferred"), else_=EmailMessage.status)
    counts = dict(db.session.execute(select(state, func.count()).where(
        EmailMessage.status.in_(("pending", "retrying", "sending", "failed"))).group_by(state)).all())
    waiting = {status: counts.get(status, 0) for status in statuses}
    sent = db.session.scalar(select(func.count()).select_from(EmailMessage).where(
        EmailMessage.status == "sent", EmailMessage.created_at >= now - timedelta(hours=24))) or 0
    oldest = db.session.scalar(select(EmailMessage.created_at).where(EmailMessage.status == "pending")
                               .order_by(EmailMessage.created_at).limit(1))
    return Outbox(waiting=waiting, sent_24h=sent, oldest_pending=oldest)


@dataclass
class Backups:
    found: list  # every backup kept; empty when the folder cannot be read (then ``error`` says why)
    error: str | None = None

    @property
    def count(self) -> int:
        return len(self.found)

    @property
    def newest(self):
        return max(self.found, key=lambda b: b.created_at, default=None)

    @property
    def newest_verified(self):
        return max((b for b in self.found if b.verified), key=lambda b: b.created_at, default=None)


def backups() -> Backups:
    """The backups kept, for the dashboard and the admins' digest."""
    try:
        return Backups(list_backups())
    except (OSError, BackupError) as err:
        return Backups([], str(err))


@dataclass
class Runtime:
    queues: list
    workers: list
    scheduler_age: float | None
    error: str | None = None
    node: str | None = None  # host:port of the Redis node answering (with Sentinel: the master now)
    service: str | None = None  # the Sentinel service, when the Sentinels name the master


def runtime() -> Runtime:
    service = redis_target(current_app.config).service
    try:
        conn = redis_client()
        node = redis_node(conn)
        return Runtime(liveness.queues(conn), liveness.workers(conn), liveness.scheduler_age(conn), node=node,
                       service=service)
    except RedisError as err:
        return Runtime([], [], None, f"Redis is unreachable ({type(err).__name__}: {err})"[:300], service=service)


def duration_chart(name: str, recent: list) -> Markup:
    """The newest runs' durations as bars, oldest on the left; red for a failed or lost run."""
    width, height = 240, 36
    if not recent:
        return chart_macro("spark")(f"{name}: no runs yet", width, height, [])
    longest = max(d for d, _, _ in recent) or 0.001
    step = width / CHART_RUNS
    bars = []
    for i, (duration, status, finished) in enumerate(recent):
        h = max(1.5, (height - 2) * duration / longest)
        when = f"{show_time(finished, label=True)} " if finished else ""
        bars.append({"css": "bar" if status == "succeeded" else "bar error", "x": i * step, "y": height - h,
                     "width": step * 0.75, "height": h, "tip": f"{when}{status} {duration:.3f} s"})
    label = f"{name}: durations of the last {len(recent)} runs, longest {longest:.3f} s"
    return chart_macro("spark")(label, width, height, bars)
