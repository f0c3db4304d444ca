"""Automation dashboard benchmark: server time of /admin/automation with 1,000,000 job runs on PostgreSQL.

A throwaway PostgreSQL database and Redis database 12 (flushed before and after). The job-run
audit is seeded set-based with ``--runs-total`` rows over 90 days (the default retention),
shaped like a real install: every periodic task at its own rate (flush-outbox every minute,
recurring tickets every 5 minutes, ...), about 1% failed, and the rest ``send_email`` runs.
Then, logged in as an admin, ``GET /admin/automation`` is timed in-process (routing, every
query, the template and its SVG charts), ``--requests`` times after a warm-up.

The baseline measured in the same run is the naive way to the same per-task figures: one
GROUP BY over every kept run (count, success rate, median duration), which is what the page
would cost without its bounded, index-walking queries. Target: under 100 ms server time.

    .venv/bin/python bench/dashboard.py --write-results
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as bench/dashboard.py

from sqlalchemy import text

from bench import common
from itsm.extensions import db

SECTION = "## Automation dashboard (bench/dashboard.py)"
REDIS_URL = "redis://127.0.0.1:6379/10"
TARGET_MS = 100.0
DAYS = 90
# (task, minutes between runs, queue) for the periodic tasks in itsm/schedules/catalog.py
PERIODIC = [("flush_outbox", 1, "high"), ("process_recurring_tickets", 5, "default"),
            ("watch_schedules", 5, "high"), ("diagnostics.ping", 10, "default"), ("cleanup_stuck_runs", 10, "high"),
            ("archive_done_tickets", 60, "low"),
            ("backup_database", 1440, "low"), ("prune_backups", 1440, "low"), ("purge_job_runs", 1440, "low"),
            ("cleanup_failed_jobs", 1440, "low"), ("send_admin_digests", 1440, "low")]

SEED = """
INSERT INTO job_runs (job_id, attempt, task_name, queue, args_summary, status, created_at, enqueued_at,
                      started_at, finished_at, duration_seconds, error_type, error_message)
SELECT :task || '-' || g, 1, :task, :queue, '', CASE WHEN g % 97 = 0 THEN 'failed' ELSE 'succeeded' END,
       t, t, t, t + d * interval '1 second', d,
       CASE WHEN g % 97 = 0 THEN 'OperationalError' END, CASE WHEN g % 97 = 0 THEN 'server closed the connection' END
FROM (SELECT g, :now - g * :step * interval '1 minute' AS t, 0.05 + (g % 37) / 10.0 AS d
      FROM generate_series(1, :n) AS g) AS s
"""

NAIVE = """
SELECT task_name, count(*), avg((status = 'succeeded')::int),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds)
FROM job_runs GROUP BY task_name
"""


def seed(app, total: int, now: datetime) -> int:
    written = 0
    with app.app_context(), db.engine.begin() as conn:
        for task, every, queue in PERIODIC:
            n = DAYS * 1440 // every
            conn.execute(text(SEED), {"task": task, "queue": queue, "n": n, "step": every, "now": now})
            written += n
        rest = max(0, total - written)
        step = DAYS * 1440 / max(rest, 1)
        conn.execute(text(SEED), {"task": "send_email", "queue": "high", "n": rest, "step": step, "now": now})
    with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE job_runs")
    return written + rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-total", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    with common.flushed(REDIS_URL), common.postgres_database() as url:
        app = common.bench_app(url, REDIS_URL=REDIS_URL, WTF_CSRF_ENABLED=False)
        common.migrate(app)
        start = perf_counter()
        total = seed(app, args.runs_total, now)
        print(f"seeded {total:,} job runs in {perf_counter() - start:.1f} s", flush=True)
        with app.app_context():
            from itsm.users.service import create_user

            create_user(email="admin@example.com", password="bench-admin-pass", role="admin")
            db.session.commit()
        assert app.test_cli_runner().invoke(args=["schedules", "sync"]).exit_code == 0
        client = app.test_client()
        login = {"email": "admin@example.com", "password": "bench-admin-pass"}
        assert client.post("/login", data=login).status_code == 302
        ours, naive = [], []
        for i in range(args.requests + 3):
            start = perf_counter()
            response = client.get("/admin/automation")
            elapsed = (perf_counter() - start) * 1000
            assert response.status_code == 200 and "flush-outbox" in response.get_data(as_text=True)
            if i >= 3:  # warm-up: first connections, template compilation
                ours.append(elapsed)
        with app.app_context(), db.engine.connect() as conn:
            for _ in range(5):
                start = perf_counter()
                conn.execute(text(NAIVE)).all()
                naive.append((perf_counter() - start) * 1000)
            db.engine.dispose()
    o, n = statistics.median(ours), statistics.median(naive)
    rows = ["| measure | value |", "|---|---|",
            f"| `GET /admin/automation`, server time, median of {len(ours)} | {o:.1f} ms |",
            f"| same, 95th percentile | {common.percentile(ours, 0.95):.1f} ms |",
            f"| baseline: one GROUP BY over every kept run (count, success rate, median), median of {len(naive)} "
            f"| {n:.1f} ms |",
            f"| ratio (ours / baseline) | {o / n:.3f}x |", "", "| target | value | verdict |", "|---|---|---|",
            f"| under {TARGET_MS:g} ms server time with {total:,} job runs | {o:.1f} ms | "
            f"{'PASS' if o < TARGET_MS else 'FAIL'} |"]
    notes = [f"- {total:,} job runs over {DAYS} days on PostgreSQL: the {len(PERIODIC)} periodic tasks at their own "
             "rates, about 1% failed, the rest `send_email`; timed in-process with Flask's test client (routing, "
             "queries, template, SVG charts; no network). Redis on this machine, no workers registered."]
    print("\n" + "\n".join(rows + [""] + notes))
    if args.write_results:
        common.write_section(SECTION, [*common.section_head(SECTION, "bench/dashboard.py", common.machine()),
                                       *notes, "", *rows])
    if o >= TARGET_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
