"""What is running right now, counted in Redis across every host: web requests and jobs.

One sorted set per kind (``itsm:maintenance:inflight:web``, ``...:job``) holds an entry per request or
job under way, scored with the time it expires. A thread of each process pushes its entries' expiry
forward while they run; a killed process stops doing so and its entries count for nothing after
``TTL_SECONDS``, so a crash never leaves "in flight" work that would block a restore for ever.

Starting work and reading the flag are one pipelined round trip, entry first: Redis runs commands in
order, so either the operator's count (taken after the flag was set) sees the entry, or the process sees
the flag and does not start. Nothing slips between the two.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError

from itsm import maintenance
from itsm.maintenance import State

log = logging.getLogger(__name__)
PREFIX = "itsm:maintenance:inflight:"
KINDS = ("web", "job")
TTL_SECONDS = 15
RENEW_SECONDS = 5


class Tracker:
    """The entries of one process (or one worker): ``begin`` before the work, ``end`` after it."""

    def __init__(self, app: Flask, kind: str, owner: str | None = None) -> None:
        self.app, self.kind = app, kind
        self.owner = owner or f"{socket.gethostname()}.{os.getpid()}"
        self.key = PREFIX + kind
        self.entries: dict[str, str] = {}  # item -> its member in the sorted set
        # Held around each change of an entry in Redis: the renewer never puts back one that just ended.
        self.lock = threading.Lock()
        self.renewer: threading.Thread | None = None

    def begin(self, item: str, what: str, connection: Redis | None = None) -> State:
        """Record ``item`` as running and read the flag in one round trip. When the flag is on the entry is
        removed again and the caller must not start; Redis errors are the caller's."""
        member = json.dumps([self.owner, item, what, round(time.time(), 3)])
        client = connection or maintenance.redis_for(self.app)
        with self.lock:
            self.entries[item] = member
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self.key, {member: time.time() + TTL_SECONDS}).get(maintenance.KEY)
        try:
            raw = pipe.execute()[-1]
            state = maintenance.interpret(self.app, raw)
        except Exception:
            self.end(item, connection)
            raise
        if state.on:
            self.end(item, connection)
        else:
            self._ensure_renewer()
        return state

    def end(self, item: str, connection: Redis | None = None) -> None:
        with self.lock:
            member = self.entries.pop(item, None)
            if member is None:
                return
            try:
                (connection or maintenance.redis_for(self.app)).zrem(self.key, member)
            except RedisError as err:
                log.warning("could not clear an in-flight entry (it expires in %ss): %s", TTL_SECONDS, err)

    def _ensure_renewer(self) -> None:
        if self.renewer is None or not self.renewer.is_alive():
            self.renewer = threading.Thread(target=self._renew, daemon=True, name=f"inflight-{self.kind}")
            self.renewer.start()

    def _renew(self) -> None:
        # ZADD, not ZADD XX: after Redis lost its data the entries are back within RENEW_SECONDS.
        while True:
            time.sleep(RENEW_SECONDS)
            with self.lock:
                if not self.entries:
                    continue
                expiry = time.time() + TTL_SECONDS
                try:
                    maintenance.redis_for(self.app).zadd(self.key, {m: expiry for m in self.entries.values()})
                except Exception as err:  # noqa: BLE001 -- a daemon thread must not die; the next round retries
                    log.warning("could not renew in-flight entries: %s", err)


def tracker(app: Flask, kind: str, owner: str | None = None) -> Tracker:
    """This process's tracker of ``kind`` (a fresh one after a fork: the pid is part of its owner)."""
    owner = owner or f"{socket.gethostname()}.{os.getpid()}"
    trackers = app.extensions.setdefault("itsm_inflight", {})
    found = trackers.get((kind, owner))
    if found is None:
        found = trackers[(kind, owner)] = Tracker(app, kind, owner)
    return found


@dataclass
class InFlight:
    """Running work by kind ("web", "job"): owner -> [(what, seconds running)]."""

    entries: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(len(items) for items in self.entries.get(kind, {}).values())

    @property
    def total(self) -> int:
        return sum(self.count(kind) for kind in self.entries)

    def describe(self) -> str:
        """"2 requests, 1 job (backup_database on web1.42.0 for 12 s)"."""
        requests, jobs = self.count("web"), self.count("job")
        parts = [f"{requests} request{'s' * (requests != 1)}", f"{jobs} job{'s' * (jobs != 1)}"]
        longest = sorted(((seconds, what, owner) for kind in self.entries
                          for owner, items in self.entries[kind].items() for what, seconds in items), reverse=True)
        detail = ", ".join(f"{what} on {owner} for {seconds:.0f} s" for seconds, what, owner in longest[:3])
        return ", ".join(parts) + (f" ({detail})" if detail else "")


def in_flight(connection: Redis) -> InFlight:
    """Everything every process says it is running now (the entries of dead processes have expired)."""
    now = time.time()
    found = InFlight()
    pipe = connection.pipeline(transaction=False)
    for kind in KINDS:
        pipe.zremrangebyscore(PREFIX + kind, "-inf", now).zrangebyscore(PREFIX + kind, now, "+inf")
    answers = pipe.execute()
    for kind, members in zip(KINDS, answers[1::2], strict=True):
        for raw in members:
            try:
                owner, _, what, started = json.loads(raw)
                seconds = max(0.0, now - float(started))
            except (ValueError, TypeError):
                owner, what, seconds = "?", "?", 0.0
            found.entries.setdefault(kind, {}).setdefault(str(owner), []).append((str(what), seconds))
    return found


def wait_until_idle(connection: Redis, timeout: float, progress: Callable[[InFlight], None] | None = None,
                    poll: float = 0.2, report_every: float = 5.0) -> InFlight:
    """Wait until nothing is in flight, at most ``timeout`` seconds; returns what is still running (empty
    when all finished). ``progress`` hears what is running now and then."""
    deadline = time.monotonic() + timeout
    next_report = time.monotonic()
    while True:
        running = in_flight(connection)
        if running.total == 0 or time.monotonic() >= deadline:
            return running
        if progress is not None and time.monotonic() >= next_report:
            progress(running)
            next_report = time.monotonic() + report_every
        time.sleep(poll)


class JobsPause:
    """Maintenance mode for the job runtime (``jobs.hooks.Pause``): workers count their jobs in flight here."""

    @staticmethod
    def is_on(app: Flask) -> bool:
        return maintenance.current(app).on

    @staticmethod
    def begin(app: Flask, owner: str, job_id: str, task: str, connection: Redis) -> bool:
        return tracker(app, "job", owner=owner).begin(job_id, task, connection=connection).on

    @staticmethod
    def end(app: Flask, owner: str, job_id: str, connection: Redis) -> None:
        tracker(app, "job", owner=owner).end(job_id, connection=connection)
