"""Where our worker's time goes per job, next to a bare RQ SimpleWorker (companion of bench/jobs.py).

All in this process, on Redis DB 11 (flushed before and after; no other database is touched) and
a throwaway audit database (``itsm_bench_<random>`` on PostgreSQL, dropped at the end, or SQLite):

1. one worker process each -- ours exactly as ``flask worker`` runs it (``jobs.worker._child``)
   and a bare ``SimpleWorker`` on a plain function -- counting Redis round trips and commands,
   and SQL statements, commits and pool checkouts per job;
2. the wall time per job of each piece of our runtime (functions wrapped with timers);
3. reference costs of writing one JobRun row per job in different ways (no RQ).

Nothing in jobs/ is changed: the counters and timers are wrappers set up in this process only,
around whichever of the functions in PIECES exist (jobs/ is being changed by others).

    .venv/bin/python bench/jobs_profile.py                    # PostgreSQL audit, 1000 jobs
    .venv/bin/python bench/jobs_profile.py --db sqlite --jobs 500
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
import threading
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository (its jobs package wins over jobs.py)

from redis.connection import Connection
from rq import Queue
from rq.worker import BaseWorker, SimpleWorker
from sqlalchemy import and_, bindparam, event, update

from bench import benchtasks, plaintasks
from bench.common import flushed
from bench.jobs import REDIS_URL, database, make_app, redis, reset
from itsm.dbtypes import utcnow
from itsm.extensions import db
from jobs import audit, dbconn, runtime, worker

COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")  # the first element of each RESP command


@contextmanager
def patched(owner, name: str, wrapper):
    original = getattr(owner, name)
    setattr(owner, name, wrapper(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def run_one_worker(app, who: str, n: int) -> float:
    """Enqueue n no-op jobs and work them off in this process; returns the seconds spent working."""
    reset(app)
    if who == "ours":
        with app.app_context():
            benchtasks.noop.apply_many(((i,), {}) for i in range(n))
        start = perf_counter()
        worker._child(app, ["high", "default", "low"], True, None, "WARNING", 0)  # what `flask worker` forks
        return perf_counter() - start
    queue = Queue("default", connection=redis())
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many([Queue.prepare_data(plaintasks.noop, (i,)) for i in range(n)], pipeline=pipe)
        pipe.execute()
    start = perf_counter()
    SimpleWorker(["default"], connection=redis()).work(burst=True, logging_level="WARNING")
    return perf_counter() - start


def counts(app, who: str, n: int) -> dict:
    sent, commands, sql = Counter(), Counter(), Counter()

    def counting(send):
        def wrapped(self, command, check_health=True):
            data = command if isinstance(command, bytes) else b"".join(bytes(c) for c in command)
            sent["round trips"] += 1
            commands.update(m.group(1).decode().upper() for m in COMMAND.finditer(data))
            return send(self, command, check_health)
        return wrapped

    with app.app_context():
        engine = db.engine
    hooks = [(engine, "before_cursor_execute", lambda *a: sql.update(["statements"])),
             (engine, "commit", lambda *a: sql.update(["commits"])),
             (engine.pool, "checkout", lambda *a: sql.update(["checkouts (each with a pre-ping)"]))]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        with patched(Connection, "send_packed_command", counting):
            seconds = run_one_worker(app, who, n)
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)
    return {"ms": seconds / n * 1000, "redis": sent["round trips"] / n, "commands": sum(commands.values()) / n,
            "top": ", ".join(f"{c} {k / n:.1f}" for c, k in commands.most_common(8)),
            "sql": ", ".join(f"{k} {v / n:.1f}" for k, v in sql.items()) or "none"}


# What to time inside our worker, where it exists (jobs/ changes): (owner, attribute).
PIECES = [(worker.ItsmWorker, "execute_job"), (SimpleWorker, "execute_job"), (BaseWorker, "perform_job"),
          (runtime, "run"), (audit, "record_start"), (audit, "record_running"), (audit, "record_success"),
          (audit, "record_outcome"), (dbconn, "write"), (runtime, "_next_attempt"), (runtime, "_begin_attempt"),
          (BaseWorker, "handle_job_success"), (BaseWorker, "dequeue_job_and_maintain_ttl"), (threading.Thread, "start")]


def breakdown(app, n: int) -> tuple[float, list[tuple[str, float, int]]]:
    spent, calls = Counter(), Counter()

    def timer(label, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += perf_counter() - start
                calls[label] += 1
        return timed

    pieces = [(owner, name, f"{getattr(owner, '__name__', owner)}.{name}".replace("jobs.", ""))
              for owner, name in PIECES if hasattr(owner, name)]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in pieces]
    for owner, name, label in pieces:
        setattr(owner, name, timer(label, getattr(owner, name)))
    try:
        seconds = run_one_worker(app, "ours", n)
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    return seconds / n * 1000, [(label, spent[label] / n * 1000, calls[label]) for _, _, label in pieces]


def write_costs(app, n: int) -> list[tuple[str, float]]:
    """Reference costs of writing one JobRun row per job, whatever jobs.audit does today."""
    table = audit.TABLE
    stmt = update(table).where(and_(table.c.job_id == bindparam("j"), table.c.attempt == 1)).values(
        status="succeeded", finished_at=bindparam("f"), duration_seconds=0.0)

    def own_transaction(conn, batch):
        with db.engine.begin() as own:
            own.execute(stmt, batch[0])

    def held_transaction(conn, batch):
        with conn.begin():
            conn.execute(stmt, batch[0])

    def autocommit(conn, batch):
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(stmt, batch[0])
        conn.commit()

    def many(conn, batch):
        with conn.begin():
            conn.execute(stmt, batch)

    figures = []
    with app.app_context():
        for label, write, size in (("engine.begin() per row: pool checkout, pre-ping, BEGIN, UPDATE, COMMIT",
                                    own_transaction, 1),
                                   ("one held connection, a transaction per row: BEGIN, UPDATE, COMMIT",
                                    held_transaction, 1),
                                   ("one held connection in AUTOCOMMIT: the UPDATE alone", autocommit, 1),
                                   ("batched: one executemany transaction per 100 rows", many, 100)):
            reset(app)
            ids = [uuid.uuid4().hex for _ in range(n)]
            with db.engine.begin() as conn:
                conn.execute(table.insert(), [{"job_id": j, "attempt": 1, "task_name": "bench.noop", "queue": "default",
                                               "args_summary": "1", "status": "queued", "created_at": utcnow()}
                                              for j in ids])
            with db.engine.connect() as conn:
                start = perf_counter()
                for k in range(0, n, size):
                    write(conn, [{"j": j, "f": utcnow()} for j in ids[k:k + size]])
                figures.append((label, (perf_counter() - start) / n * 1000))
        db.engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql", help="audit database")
    args = parser.parse_args()
    with flushed(REDIS_URL), database(args.db) as url:
        app = make_app(url)
        for handler in logging.getLogger().handlers:  # keep the per-job log lines (and their cost) off the screen
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        print(f"One worker process, {args.jobs} no-op jobs, {args.db} audit, RQ logging at WARNING "
              "(times include the counters' own overhead):")
        for who in ("ours", "bare"):
            c = counts(app, who, args.jobs)
            print(f"  {who:4}: {c['ms']:.2f} ms/job; Redis {c['redis']:.1f} round trips, {c['commands']:.1f} "
                  f"commands/job ({c['top']}); SQL/job: {c['sql']}")
        total, pieces = breakdown(app, args.jobs)
        print(f"\nOur worker, wall time per job by piece ({total:.2f} ms/job in all, one process, timers only;"
              " pieces nest, so they do not add up):")
        for label, ms, count in pieces:
            print(f"  {label:45} {ms:6.3f} ms/job  ({count / args.jobs:.1f} calls/job)")
        print(f"\nWriting one JobRun row per job ({args.db}), {args.jobs} rows, no RQ:")
        for label, ms in write_costs(app, args.jobs):
            print(f"  {ms:6.3f} ms/row  {label}")
        with app.app_context():
            db.engine.dispose()


if __name__ == "__main__":
    main()
