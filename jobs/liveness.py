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


def scheduler_age(connection: Redis) -> float | None:
    return heartbeat_age(connection)


def scheduler_alive(age: float | None) -> bool:
    return age is not None and age < LIVE_SECONDS
