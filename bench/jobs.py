"""Jobs benchmark: worker and enqueue throughput of our runtime (jobs/) against bare RQ.

On a Redis database of its own (redis://127.0.0.1:6379/11, flushed before and after; no other is
touched) it times workers running trivial jobs until the queue is empty: ``flask worker --concurrency 2
--burst`` (our wrapper, JobRun audit on a throwaway PostgreSQL ``itsm_bench_<random>`` database,
dropped at the end, and on SQLite), ``rq worker --burst`` (forking Worker, ``--fork-jobs`` jobs) and
``rq worker-pool -n 2 -w rq.worker.SimpleWorker --burst`` (both with no wrapper, no audit). Rate = jobs /
(last ended_at - first started_at) in RQ's job hashes: startup and burst exit are excluded alike.
Then enqueue, in this process: ``task.delay()`` x N, ``task.apply_many()``, RQ's ``Queue.enqueue_many``
over ``Queue.prepare_data``, RQ's ``Queue.enqueue`` x N. Targets: ours / forking >= 5x, ours / pool >= 0.70.
Where the time goes per job: bench/jobs_profile.py.

    .venv/bin/python bench/jobs.py --write-results              # full run, updates bench/RESULTS.md
    .venv/bin/python bench/jobs.py --jobs 500 --runs 1 --db sqlite  # quick look
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository (its jobs package wins over this file)

import psycopg
import rq
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, text

from bench import benchtasks, common, jobs_hosts, plaintasks
from itsm.extensions import db
from jobs.models import JobRun

REDIS_URL = "redis://127.0.0.1:6379/11"  # owned by this script: the only database it flushes
SECTION = "## Jobs (bench/jobs.py)"
RQ = str(Path(sys.executable).with_name("rq"))
FORK_TARGET, POOL_TARGET = 5.0, 0.70
LABELS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
OURS = {kind: f"ours: flask worker -c 2, {label} audit" for kind, label in LABELS.items()}
FORK, POOL = "rq worker (forking Worker)", "rq worker-pool -n 2 SimpleWorker"
MANY = "rq: Queue.enqueue_many(prepare_data x N), no audit"


def redis() -> Redis:
    """A client of this script's Redis database (DB 11)."""
    return common.redis_client(REDIS_URL)


def flush() -> None:
    """Empty this script's Redis database (DB 11) and no other."""
    common.flush_redis(REDIS_URL)


def make_app(url: str) -> Flask:
    """The app on audit database ``url`` and this script's Redis database, jobs queued (not eager)."""
    return common.bench_app(url, REDIS_URL=REDIS_URL, JOBS_EAGER=False)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A migrated audit database this script owns, removed afterwards even on error."""
    with common.scratch_database(kind) as url:
        app = make_app(url)
        common.migrate(app)
        with app.app_context():
            db.engine.dispose()
        yield url


def subprocess_env(url: str) -> dict[str, str]:
    """The environment of a worker on audit database ``url`` (none for bare RQ) that loads bench.benchtasks."""
    return common.flask_env(url, REDIS_URL, JOBS_IMPORTS="bench.benchtasks")


def reset(app: Flask) -> None:
    """Empty the Redis database and the job_runs table."""
    flush()
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("DELETE FROM job_runs"))


def run_worker(cmd: list[str], env: dict, ids: list[str], log: Path) -> dict:
    """Run a burst worker to the end; rates from RQ's per-job timestamps and from the wall clock."""
    start = perf_counter()
    with log.open("ab") as out:
        proc = common.spawn(cmd, env, out)
        try:
            code = proc.wait(timeout=max(300, len(ids) / 5))
        except subprocess.TimeoutExpired:
            common.kill_group(proc)
            raise RuntimeError(f"{cmd[:3]} timed out; see {log}") from None
    wall = perf_counter() - start
    with redis().pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(f"rq:job:{job_id}", "status", "started_at", "ended_at")
        rows = pipe.execute()
    finished = [r for r in rows if r[0] == b"finished"]
    if code != 0 or len(finished) != len(ids):
        raise RuntimeError(f"{shlex.join(cmd[:4])}: exit {code}, {len(finished)}/{len(ids)} finished; see {log}")
    first = min(datetime.fromisoformat(r[1].decode()) for r in finished)
    last = max(datetime.fromisoformat(r[2].decode()) for r in finished)
    return {"rate": len(ids) / (last - first).total_seconds(), "wall": len(ids) / wall}


def bench_ours(kind: str, url: str, n: int, log: Path) -> dict:
    app = make_app(url)
    reset(app)
    with app.app_context():
        ids = benchtasks.noop.apply_many(((i,), {}) for i in range(n))
    cmd = [sys.executable, "-m", "flask", "worker", "--concurrency", "2", "--burst"]
    result = run_worker(cmd, subprocess_env(url), ids, log)
    with app.app_context():
        done = db.session.scalar(select(func.count()).select_from(JobRun).where(JobRun.status == "succeeded"))
        db.session.remove()
        db.engine.dispose()
    if done != n:
        raise RuntimeError(f"{kind}: {done}/{n} JobRun rows succeeded; see {log}")
    return result


def enqueue_plain(n: int) -> list[str]:
    """RQ's batched enqueue of n calls of a plain function (no wrapper, no audit)."""
    queue = Queue("default", connection=redis())
    with queue.connection.pipeline() as pipe:
        jobs = queue.enqueue_many([Queue.prepare_data(plaintasks.noop, (i,)) for i in range(n)], pipeline=pipe)
        pipe.execute()
    return [job.id for job in jobs]


def bench_plain(cmd: list[str], n: int, log: Path) -> dict:
    flush()
    return run_worker([RQ, *cmd, "--burst", "-u", REDIS_URL, "default"], subprocess_env(""), enqueue_plain(n), log)


def timed_rates(n: int, calls: dict, before) -> dict:
    rates = {}
    for label, call in calls.items():
        before()
        start = perf_counter()
        call()
        rates[label] = n / (perf_counter() - start)
    return rates


def bench_enqueue(kind: str, url: str, n: int) -> dict:
    """Our enqueue paths (with the queued JobRun rows) through ``create_app`` on ``url``."""
    app = make_app(url)
    with app.app_context():
        for _ in range(20):  # warm up: connections, prepared statements
            benchtasks.noop.delay(0)
        rates = timed_rates(n, {f"ours: task.delay() x N, {LABELS[kind]} audit":
                                lambda: [benchtasks.noop.delay(i) for i in range(n)],
                                f"ours: task.apply_many(N), {LABELS[kind]} audit":
                                lambda: benchtasks.noop.apply_many(((i,), {}) for i in range(n))}, lambda: reset(app))
        db.session.remove()
        db.engine.dispose()
    return rates


def bench_rq_enqueue(n: int) -> dict:
    queue = Queue("default", connection=redis())
    queue.enqueue(plaintasks.noop, 0)  # warm up the connection
    return timed_rates(n, {MANY: lambda: enqueue_plain(n), "rq: Queue.enqueue() x N, no audit":
                           lambda: [queue.enqueue(plaintasks.noop, i) for i in range(n)]}, flush)


def run_all(args, log: Path) -> tuple[dict, dict]:
    workers: dict[str, list] = {}
    enqueue: dict[str, list] = {}  # label -> one figure per run
    kinds = ("postgresql", "sqlite") if args.db == "both" else (args.db,)
    with ExitStack() as stack:
        urls = {kind: stack.enter_context(database(kind)) for kind in kinds}
        for run in range(args.runs):
            for kind in kinds:
                workers.setdefault(OURS[kind], []).append(bench_ours(kind, urls[kind], args.jobs, log))
                for label, rate in bench_enqueue(kind, urls[kind], args.jobs).items():
                    enqueue.setdefault(label, []).append(rate)
            workers.setdefault(FORK, []).append(bench_plain(["worker"], args.fork_jobs, log))
            workers.setdefault(POOL, []).append(bench_plain(
                ["worker-pool", "-n", "2", "-w", "rq.worker.SimpleWorker"], args.jobs, log))
            for label, rate in bench_rq_enqueue(args.jobs).items():
                enqueue.setdefault(label, []).append(rate)
            flush()
            print(f"run {run + 1}/{args.runs} done: " + ", ".join(
                f"{label}: {runs[-1]['rate']:.0f}/s" for label, runs in workers.items()), flush=True)
    summary = {label: {"jobs": args.fork_jobs if label == FORK else args.jobs,
                       "rate": statistics.median(r["rate"] for r in runs),
                       "wall": statistics.median(r["wall"] for r in runs), "all": [r["rate"] for r in runs]}
               for label, runs in workers.items()}
    return summary, {label: statistics.median(rates) for label, rates in enqueue.items()}


def tables(workers: dict, enqueue: dict, n: int) -> list[str]:
    rows = ["| worker | jobs | jobs/s (first start to last end) | jobs/s (wall, incl. startup) | each run |",
            "|---|---:|---:|---:|---|"]
    rows += [f"| {label} | {w['jobs']} | {w['rate']:.0f} | {w['wall']:.0f} | "
             f"{', '.join(f'{r:.0f}' for r in w['all'])} |" for label, w in workers.items()]
    fork, pool = workers[FORK]["rate"], workers[POOL]["rate"]
    rows += ["", "| ratio | value | target | verdict |", "|---|---:|---|---|"]
    for kind in LABELS:
        if OURS[kind] in workers:
            ours = workers[OURS[kind]]["rate"]
            for name, base, target in (("forking Worker", fork, FORK_TARGET), ("SimpleWorker pool", pool, POOL_TARGET)):
                rows.append(f"| ours ({LABELS[kind]}) / {name} | {ours / base:.2f}x | >= {target:.2f}x | "
                            f"{'PASS' if ours / base >= target else 'FAIL'} |")
    rows += ["", f"| enqueue, N = {n} | jobs/s | / RQ enqueue_many |", "|---|---:|---:|"]
    rows += [f"| {label} | {rate:.0f} | {rate / enqueue[MANY]:.2f}x |" for label, rate in enqueue.items()]
    return rows


def fingerprint() -> str:
    """The code under test changes under our feet (others edit jobs/): a digest of jobs/*.py names it."""
    files = sorted((common.ROOT / "jobs").glob("*.py"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files))
    return digest.hexdigest()[:12]


def services() -> str:
    """The versions of RQ, Redis and PostgreSQL (with its durability settings) for the ``- Machine:`` line."""
    with psycopg.connect(common.PG_ADMIN_URL) as conn:
        pg = [conn.execute(q).fetchone()[0] for q in ("SHOW server_version", "SHOW synchronous_commit", "SHOW fsync")]
    redis_version = redis().info("server")["redis_version"]
    return (f"RQ {rq.VERSION}, Redis {redis_version}, PostgreSQL {pg[0]} (synchronous_commit={pg[1]}, "
            f"fsync={pg[2]}); all on the same machine")


def write_results(rows: list[str], args, load: float, code: str) -> None:
    lines = common.section_head(SECTION, "bench/jobs.py",
                                f"{common.machine()}, {services()}; 1-min load average {load:.2f} at start",
                                f"; jobs/ source digest (sha256 of jobs/*.py, `fingerprint()`): {code}")
    lines += [f"- Workers: N = {args.jobs} no-op jobs enqueued first ({args.fork_jobs} for the slow forking Worker), "
              "Redis DB 11 flushed before each. Ours: `flask worker --concurrency 2 --burst` running "
              "`bench.benchtasks.noop` (a `@task`: `jobs.runtime.run` and its JobRun audit). Bare RQ: `rq worker "
              "--burst default` and `rq worker-pool -n 2 -w rq.worker.SimpleWorker --burst default` running the "
              "plain `bench.plaintasks.noop` (no wrapper, no audit). Each tool logs at its default into a file "
              "(bare RQ: 4 INFO lines per job; a `-l WARNING` pool measured 3-5% faster, within the noise).",
              "- Rate: N / (latest `ended_at` - earliest `started_at`) over the N jobs' RQ hashes: process startup, "
              "app creation and burst exit are excluded alike for all three; the wall rate (process start to exit) "
              "is for reference. Each run checks every job `finished` in RQ and, for ours, N JobRun rows `succeeded`.",
              "- Enqueue: in this process through `create_app` on the same audit database, 20 warmup calls, then N "
              "calls timed (prepare_data included for RQ's enqueue_many). The issue measured RQ's enqueue_many at "
              "about 12,000 jobs/s and wants apply_many to approach it (no numeric target).",
              f"- Figures: median of {args.runs} runs; ratios of the medians. The machine is shared: see each run. "
              "Per-job breakdown: `.venv/bin/python bench/jobs_profile.py`.", "", *rows]
    common.write_section(SECTION, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per worker / enqueue measurement")
    parser.add_argument("--fork-jobs", type=int, default=1_000, help="jobs for the (slow) forking worker")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both", help="audit database")
    parser.add_argument("--hosts-runs", type=int, default=3, help="runs of the two-host comparison (0: none)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    load, code = os.getloadavg()[0], fingerprint()
    with tempfile.TemporaryDirectory(prefix="itsm-bench-jobs-") as tmp:
        log = Path(tmp) / "workers.log"
        with common.flushed(REDIS_URL), common.log_tail_on_error(log):
            workers, enqueue = run_all(args, log)
    rows = tables(workers, enqueue, args.jobs)
    if args.hosts_runs:
        reason = jobs_hosts.available()
        rows += ["", *(jobs_hosts.measure(args.jobs, args.hosts_runs) if reason is None
                       else [f"- Across hosts: not measured here ({reason})."])]
    print("\n" + "\n".join(rows))
    if fingerprint() != code:
        code = f"{code} -> {fingerprint()}: WARNING, jobs/ changed during this run, figures may mix versions"
        print(code, file=sys.stderr)
    if args.write_results:
        write_results(rows, args, load, code)


if __name__ == "__main__":
    main()
