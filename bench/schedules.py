"""Schedules benchmark: lateness of ``flask scheduler`` against plain rq-scheduler, and edit-to-effect.

On a Redis database this script owns (redis://127.0.0.1:6379/10, flushed before each phase and at the
end; no other is touched) and a throwaway PostgreSQL database ``itsm_bench_<random>`` (migrated, dropped
WITH (FORCE) at the end). Per run: (1) ours, ``flask scheduler`` + ``flask worker --concurrency 2``: 50
one-off clocked tasks (``diagnostics.ping``) due at random millisecond times 5-35 s ahead, then 50 due on
whole seconds; lateness = JobRun.started_at (attempt 1 of the firing's job) - ScheduleFiring.tick_at, and
each task must fire exactly once. (2) Edit-to-effect, same processes: an interval task every 1 hour is
edited to every 2 seconds with ``service.save`` + commit; timed from the commit: its new entry in
``rq:scheduler:scheduled_jobs``, its new ``next_tick_at`` and its first run. (3) Baseline: 50
``Scheduler.enqueue_at(due, bench.plaintasks.noop)`` at the random offsets of (1), run by ``rqscheduler
-i 1`` (each run) or at its default ``-i 60`` (``--runs-60`` runs) with ``rq worker-pool -n 2 -w
rq.worker.SimpleWorker``; lateness = RQ job started_at - due. Targets: never early, p95 < 1 s, edit < 5 s.

    .venv/bin/python bench/schedules.py --write-results       # full run (~10 min), updates bench/RESULTS.md
    .venv/bin/python bench/schedules.py --runs 1 --runs-60 0  # quick look (~2 min), no 60 s baseline
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository (its jobs package wins over this file)

from redis import Redis
from rq import Worker
from rq_scheduler import Scheduler
from sqlalchemy import and_, select, text

from bench import common, plaintasks
from bench.common import percentile as pct  # nearest rank
from itsm.extensions import db
from itsm.schedules import service
from itsm.schedules.models import PeriodicTask, ScheduleFiring
from itsm.schedules.validation import Definition
from jobs.models import JobRun

REDIS_URL = "redis://127.0.0.1:6379/10"  # owned by this script: the only database it flushes
SECTION = "## Schedules (bench/schedules.py)"
BIN, ZSET = Path(sys.executable).parent, Scheduler.scheduled_jobs_key
N, EARLIEST, LATEST, P95_TARGET, EDIT_TARGET = 50, 5.0, 35.0, 1.0, 5.0
ODD = re.compile(r"ERROR|CRITICAL|Traceback|missed|lost from Redis|already fired|skipped|exited with")


def redis() -> Redis:
    """A client of this script's Redis database (DB 10)."""
    return common.redis_client(REDIS_URL)


def flush() -> None:
    """Empty this script's Redis database (DB 10) and no other."""
    common.flush_redis(REDIS_URL)


def wait_until(cond, timeout: float, what: str, procs=(), period: float = 0.005):
    end = time.time() + timeout
    while time.time() < end:
        if value := cond():
            return value
        if dead := [p for p in procs if p.poll() is not None]:
            raise RuntimeError(f"{shlex.join(dead[0].args[-3:])} exited ({dead[0].returncode}) waiting for {what}")
        time.sleep(period)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def rq_started(conn: Redis, job_id: str) -> float:
    return datetime.fromisoformat(conn.hget(f"rq:job:{job_id}", "started_at").decode()).replace(tzinfo=UTC).timestamp()


def ours_firings(app, label: str, offsets: list[float], whole: bool, procs) -> dict:
    """Create 50 one-off clocked tasks, wait for them all to run, and read when each started."""
    start = time.time()
    dues = [datetime.fromtimestamp(round((math.ceil(start) if whole else start) + off, 3), UTC) for off in offsets]
    with app.app_context():
        ids = {service.save(Definition(name=f"{label}-{i}", task="diagnostics.ping", kind="clocked",
                                       clocked_time=due, one_off=True)).id: due for i, due in enumerate(dues)}
        db.session.commit()
        created = time.time() - start
        query = (select(ScheduleFiring.periodic_task_id, ScheduleFiring.tick_at, ScheduleFiring.claimed_at,
                        ScheduleFiring.job_id, ScheduleFiring.status, JobRun.started_at)
                 .join(JobRun, and_(JobRun.job_id == ScheduleFiring.job_id, JobRun.attempt == 1), isouter=True)
                 .where(ScheduleFiring.periodic_task_id.in_(ids)))

        def done():
            rows = db.session.execute(query).all()
            db.session.rollback()
            ended = [r for r in rows if r.status in ("succeeded", "failed", "skipped", "lost") and r.started_at]
            return rows if len(ended) >= N and time.time() > max(dues).timestamp() + 3 else None

        rows = wait_until(done, LATEST + 90, f"{N} firings ({label})", procs, period=0.5)
        runs = db.session.execute(select(JobRun.job_id).where(JobRun.job_id.like("periodic-%"))).scalars().all()
        db.session.rollback()
    mine = [j for j in runs if int(j.split("-")[1]) in ids]  # every JobRun of these tasks, skipped copies too
    problems = [f"{label}: task {r.periodic_task_id} {r.status}, tick {r.tick_at:%H:%M:%S.%f} due "
                f"{ids[r.periodic_task_id]:%H:%M:%S.%f}" for r in rows if r.status != "succeeded"
                or abs((r.tick_at - ids[r.periodic_task_id]).total_seconds()) > 0.001]
    late = {r.job_id: (r.started_at - r.tick_at).total_seconds() for r in rows}
    return {"firings": len(rows), "ok": len(rows) == len({r.periodic_task_id for r in rows}) == len(mine) == N,
            "dup": len(mine) - len(set(mine)) + max(0, len(rows) - N), "problems": problems, "created": created,
            "late": list(late.values()), "claim": [(r.claimed_at - r.tick_at).total_seconds() for r in rows],
            "rq": [rq_started(redis(), r.job_id) - r.tick_at.timestamp() for r in rows]}


def edit_once(name: str, rng: random.Random, procs) -> dict:
    """Edit an hourly interval task to every 2 s and time what follows, from the commit (in an app context)."""
    conn = redis()
    row = service.save(Definition(name=name, task="diagnostics.ping", kind="interval", every=1, period="hours"))
    db.session.commit()
    task_id, prefix = row.id, f"periodic-{row.id}-"
    first = (select(ScheduleFiring.tick_at, JobRun.started_at).join(JobRun, JobRun.job_id == ScheduleFiring.job_id)
             .where(ScheduleFiring.periodic_task_id == task_id, JobRun.started_at.is_not(None))
             .order_by(ScheduleFiring.tick_at).limit(1))

    def entries():
        return {m.decode() for m in conn.zrange(ZSET, 0, -1) if m.decode().startswith(prefix)}

    def next_tick():
        value = db.session.scalar(select(PeriodicTask.next_tick_at).where(PeriodicTask.id == task_id))
        db.session.rollback()
        return value

    old, old_next = wait_until(entries, 10, "the hourly entry", procs), wait_until(next_tick, 10, "next_tick_at")
    time.sleep(rng.uniform(0.2, 1.2))  # edit at a random phase of the scheduler's poll
    d = service.definition_of(row)
    d.every, d.period = 2, "seconds"
    service.save(d, row)
    db.session.commit()
    t0, seen = time.time(), {}

    def check():
        now = time.time()
        if "redis" not in seen and entries() - old:
            seen["redis"] = now - t0
        if "db" not in seen and next_tick() != old_next:
            seen["db"] = now - t0
        if "run" not in seen and (hit := db.session.execute(first).first()):
            seen["run"] = hit.started_at.timestamp() - t0
            seen["run_late"] = (hit.started_at - hit.tick_at).total_seconds()
        db.session.rollback()
        return len(seen) == 4

    wait_until(check, 20, f"edit of {name} to take effect", procs)
    service.set_enabled(row, False)
    db.session.commit()
    return seen


def ours_run(url: str, app, run: int, offsets: list[float], args, log: Path) -> dict:
    flush()
    with app.app_context(), db.engine.begin() as conn:  # a clean slate: the previous run's tasks and audit
        conn.execute(text("DELETE FROM periodic_tasks"))
        conn.execute(text("DELETE FROM job_runs"))
    flask = [sys.executable, "-m", "flask"]
    cmds = [[*flask, "scheduler"], [*flask, "worker", "--concurrency", "2"]]
    with common.running(cmds, common.flask_env(url, REDIS_URL), log) as procs:
        conn = redis()
        wait_until(lambda: conn.exists("itsm:scheduler:heartbeat") and Worker.count(connection=conn) >= 2, 60,
                   "scheduler and workers to start", procs, period=0.1)
        rng = random.Random(args.seed * 1000 + run + 500)
        result = {"random": ours_firings(app, f"r{run}-random", offsets, False, procs),
                  "whole": ours_firings(app, f"r{run}-whole", [rng.randint(5, 35) for _ in offsets], True, procs)}
        with app.app_context():
            result["edits"] = [edit_once(f"r{run}-edit-{k}", rng, procs) for k in range(args.edits)]
    flush()
    return result


def baseline_run(interval: float, offsets: list[float], log: Path) -> list[float]:
    flush()
    cmds = [[str(BIN / "rqscheduler"), "-u", REDIS_URL, "-i", f"{interval:g}"],
            [str(BIN / "rq"), "worker-pool", "-n", "2", "-w", "rq.worker.SimpleWorker", "-u", REDIS_URL, "default"]]
    with common.running(cmds, common.flask_env("", REDIS_URL), log) as procs:
        conn = redis()
        wait_until(lambda: conn.keys(Scheduler.redis_scheduler_namespace_prefix + "*")
                   and Worker.count(connection=conn) >= 2, 60, "rqscheduler and rq workers to start", procs, period=0.1)
        base, scheduler = time.time(), Scheduler(connection=conn, queue_name="default")
        dues = {scheduler.enqueue_at(datetime.fromtimestamp(base + off, UTC), plaintasks.noop, i).id: base + off
                for i, off in enumerate(offsets)}
        wait_until(lambda: all(conn.hget(f"rq:job:{j}", "status") == b"finished" for j in dues),
                   LATEST + interval + 60, f"rqscheduler -i {interval:g} jobs", procs, period=0.5)
        late = [rq_started(conn, j) - due for j, due in dues.items()]
    flush()
    return late


def stats_row(label: str, runs: list[list[float]], count: str) -> str:
    values = [v for r in runs for v in r]
    return (f"| {label} | {count} | {min(values):.3f} | {pct(values, 0.5):.3f} | {pct(values, 0.95):.3f} | "
            f"{max(values):.3f} | {sum(v < 0 for v in values)} | {', '.join(f'{pct(r, 0.95):.3f}' for r in runs)} |")


def tables(ours: list[dict], base1: list[list[float]], base60: list[list[float]]) -> tuple[list[str], list[str]]:
    batches = [r[k] for r in ours for k in ("random", "whole")]
    rows = ["| lateness = start - due (s) | firings per run | min | p50 | p95 | max | early | p95 per run |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for key, field, label in (("random", "late", "ours, due at random ms: JobRun.started_at - tick_at"),
                              ("random", "rq", "ours, same firings: RQ job started_at - tick_at"),
                              ("random", "claim", "ours, same firings: ScheduleFiring.claimed_at - tick_at"),
                              ("whole", "late", "ours, due on whole seconds: JobRun.started_at - tick_at")):
        count = ", ".join(str(r[key]["firings"]) for r in ours) if field == "late" else "same"
        rows.append(stats_row(label, [r[key][field] for r in ours], count))
    for interval, runs in ((60, base60), (1, base1)):
        if runs:
            rows.append(stats_row(f"rqscheduler -i {interval} + rq worker-pool: RQ started_at - due", runs,
                                  ", ".join(str(len(r)) for r in runs)))
    edits = [e for r in ours for e in r["edits"]]
    rows += ["", f"| edit-to-effect, from the commit (s), {len(edits)} edits | median | max |", "|---|---:|---:|"]
    for key, label in (("redis", "scheduler noticed: new entry in `rq:scheduler:scheduled_jobs`"),
                       ("db", "scheduler noticed: new `next_tick_at` in the database"),
                       ("run", "first run of the new schedule (JobRun.started_at)"),
                       ("run_late", "that first run's lateness vs its tick")):
        rows.append(f"| {label} | {pct([e[key] for e in edits], 0.5):.3f} | {max(e[key] for e in edits):.3f} |")
    late, whole = ([v for r in ours for v in r[k]["late"]] for k in ("random", "whole"))
    problems = [p for b in batches for p in b["problems"]]
    dup, early = sum(b["dup"] for b in batches), min(late + whole)
    noticed, first = max(max(e["redis"], e["db"]) for e in edits), max(e["run"] for e in edits)
    exact = all(b["ok"] for b in batches) and not dup and not problems
    checks = [("never early (ours, min lateness >= 0)", f"{early:.3f} s", early >= 0),
              (f"exactly {N} firings per batch, none duplicated",
               f"{', '.join(str(b['firings']) for b in batches)}; {dup} duplicates; {len(problems)} problems", exact),
              ("p95 lateness < 1 s (ours, due at random ms)", f"{pct(late, 0.95):.3f} s", pct(late, 0.95) < P95_TARGET),
              ("p95 lateness < 1 s (ours, due on whole seconds)", f"{pct(whole, 0.95):.3f} s",
               pct(whole, 0.95) < P95_TARGET),
              ("edit-to-effect < 5 s: scheduler noticed (max)", f"{noticed:.3f} s", noticed < EDIT_TARGET),
              ("edit-to-effect < 5 s: first run (max)", f"{first:.3f} s", first < EDIT_TARGET)]
    rows += ["", "| target | value | verdict |", "|---|---|---|"]
    rows += [f"| {name} | {value} | {'PASS' if ok else 'FAIL'} |" for name, value, ok in checks]
    return rows, problems


def write_results(rows: list[str], notes: list[str], args) -> None:
    machine = f"{os.cpu_count()} CPUs, {common.cpu_model()}, Python {common.python_version()}"
    lines = common.section_head(SECTION, "bench/schedules.py", machine,
                                f": {args.runs} run(s) of ours and of the 1 s baseline, {args.runs_60} of the 60 s "
                                "baseline (over a minute each); figures pooled over the runs, "
                                "percentiles by nearest rank.")
    lines += [*notes, "", *rows]
    common.write_section(SECTION, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of ours and of the 1 s baseline")
    parser.add_argument("--runs-60", type=int, default=1, help="runs of the 60 s (default interval) baseline")
    parser.add_argument("--edits", type=int, default=5, help="edits per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", type=Path, help="keep the processes' log here (default: a temp file)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="itsm-bench-schedules-") as tmp:
        log = args.log or Path(tmp) / "processes.log"
        ours, base1, base60 = [], [], []
        with common.flushed(REDIS_URL), common.log_tail_on_error(log), common.postgres_database() as url:
            app = common.bench_app(url, JOBS_EAGER=False, REDIS_URL=REDIS_URL)
            common.migrate(app)
            for run in range(args.runs):
                rng = random.Random(args.seed * 1000 + run)
                offsets = [rng.uniform(EARLIEST, LATEST) for _ in range(N)]
                ours.append(ours_run(url, app, run, offsets, args, log))
                base1.append(baseline_run(1, offsets, log))
                if run < args.runs_60:
                    base60.append(baseline_run(60, offsets, log))
                print(f"run {run + 1}/{args.runs}: ours p95 {pct(ours[-1]['random']['late'], 0.95):.3f} s, "
                      f"rqscheduler -i 1 p95 {pct(base1[-1], 0.95):.3f} s", flush=True)
        odd = [line for line in log.read_text(errors="replace").splitlines() if ODD.search(line)]
    rows, problems = tables(ours, base1, base60)
    created = max(r[k]["created"] for r in ours for k in ("random", "whole"))
    notes = [f"- Ours: `flask scheduler` + `flask worker --concurrency 2`, PostgreSQL; per run {N} one-off clocked "
             f"tasks (`diagnostics.ping`) due at random times {EARLIEST:g}-{LATEST:g} s ahead (millisecond precision), "
             f"then {N} due on whole seconds; each batch created with `service.save` in at most {created:.2f} s. "
             "Clocked one-offs give each firing a known, distinct due time and make exactly-once checkable per task.",
             "- Baseline: the random batch's offsets as `Scheduler.enqueue_at(due, bench.plaintasks.noop)`; "
             "`rqscheduler -u redis://127.0.0.1:6379/10 -i 1` or `-i 60` and "
             "`rq worker-pool -n 2 -w rq.worker.SimpleWorker default`.",
             f"- Edit-to-effect: {args.edits} edits per run, each of a new interval task from every 1 hour to every "
             "2 seconds (`service.save` + commit) at a random phase of the scheduler's poll, watched every 5 ms.",
             f"- Log lines matching `{ODD.pattern}`: {len(odd)}" + (f"; first: `{odd[0][:200]}`" if odd else ""),
             *(f"- Problem: {p}" for p in problems[:10])]
    print("\n" + "\n".join(rows + [""] + notes))
    if args.write_results:
        write_results(rows, notes, args)


if __name__ == "__main__":
    main()
