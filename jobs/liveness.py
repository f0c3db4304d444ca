"""Who is alive and how much work waits: workers, the scheduler and the queues, as /readyz, the
automation dashboard and ``flask jobs ping`` see them."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from itsm.dbtypes import utcnow
from jobs.connection import queue_names

LIVE_SECONDS = 60  # a heartbeat older than this is a dead process
HEARTBEAT_KEY = "itsm:scheduler:heartbeat"  # the periodic-job scheduler's, set once a second while it runs
# Each scheduler's own heartbeat by name ("itsm.<host>.<pid>"), a sorted set scored by time: with a standby on
# another machine, or one whose machine was lost, which one beats and where is what an operator needs.
SCHEDULERS_KEY = "itsm:scheduler:beats"
FORGET_SECONDS = 120  # a scheduler silent this long is dropped from the set (as HEARTBEAT_KEY expires)


def scheduler_beat(connection: Redis, name: str, now: float) -> None:
    """One heartbeat of the scheduler ``name``: the deployment's (some scheduler runs) and its own."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.set(HEARTBEAT_KEY, now, ex=FORGET_SECONDS)
        pipe.zadd(SCHEDULERS_KEY, {name: now})
        pipe.zremrangebyscore(SCHEDULERS_KEY, "-inf", now - FORGET_SECONDS)
        pipe.expire(SCHEDULERS_KEY, FORGET_SECONDS)
        pipe.execute()


def heartbeat_age(connection: Redis) -> float | None:
    raw = connection.get(HEARTBEAT_KEY)
    return None if raw is None else max(0.0, time.time() - float(raw))


@dataclass
class WorkerState:
    name: str
    state: str
    heartbeat_age: float | None
    queues: list[str]

    @property
    def alive(self) -> bool:
        return self.heartbeat_age is not None and self.heartbeat_age < LIVE_SECONDS

    @property
    def busy(self) -> bool:
        return self.state == "busy"


@dataclass
class SchedulerState:
    name: str
    heartbeat_age: float

    @property
    def alive(self) -> bool:
        return self.heartbeat_age < LIVE_SECONDS


@dataclass
class QueueState:
    name: str
    queued: int
    started: int
    scheduled: int
    failed: int


def workers(connection: Redis) -> list[WorkerState]:
    now = utcnow()
    found = []
    for w in Worker.all(connection=connection):
        beat = w.last_heartbeat
        found.append(WorkerState(w.name, str(w.get_state()), None if beat is None else (now - beat).total_seconds(),
                                 list(w.queue_names())))
    return sorted(found, key=lambda w: w.name)


def queues(connection: Redis) -> list[QueueState]:
    found = []
    for name in queue_names():
        queue = Queue(name, connection=connection)
        found.append(QueueState(name, queue.count, StartedJobRegistry(queue=queue).count,
                                ScheduledJobRegistry(queue=queue).count, FailedJobRegistry(queue=queue).count))
    return found


def schedulers(connection: Redis) -> list[SchedulerState]:
    """Every scheduler heard from lately, by name, however many machines run one."""
    now = time.time()
    found = [SchedulerState(member.decode() if isinstance(member, bytes) else member, max(0.0, now - score))
             for member, score in connection.zrange(SCHEDULERS_KEY, 0, -1, withscores=True)]
    return sorted(found, key=lambda s: s.name)


def scheduler_age(connection: Redis) -> float | None:
    return heartbeat_age(connection)


def scheduler_alive(age: float | None) -> bool:
    return age is not None and age < LIVE_SECONDS
