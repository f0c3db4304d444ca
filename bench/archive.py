"""Auto-archive benchmark: one archive pass over 1,000,000 tickets on PostgreSQL, about half eligible.

Builds the schema with the migrations in a throwaway ``itsm_bench_<random>`` database,
inserts ``--tickets`` tickets set-based (half done more than a day ago, the rest open or
recently done), then times, ``--runs`` times (rewinding between runs):

- ours: ``archive_done`` (one UPDATE ... RETURNING feeding the history-event INSERT);
- the baseline measured in the same run: the bare UPDATE of the same rows, no history;
- an empty pass (nothing left to archive), with ``ix_tickets_archived_done`` and without it.

It prints the plan of the empty pass so the index use is visible. Targets: a pass archiving
500,000 tickets with their history under 8 s; an empty pass under 10 ms.

    .venv/bin/python bench/archive.py --write-results
    .venv/bin/python bench/archive.py --tickets 100000 --runs 1   # quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as bench/archive.py

from sqlalchemy import text

from bench import common
from itsm.extensions import db
from itsm.housekeeping.archive import archive_done, settle

SECTION = "## Auto-archive (bench/archive.py)"
TARGET_PASS = 8.0
TARGET_EMPTY_MS = 10.0
HOURS = 24

SEED = """
INSERT INTO tickets (title, description, priority, column_id, category, created_at, updated_at, done_at,
                     is_archived, is_recurring)
SELECT 'Ticket ' || g, 'Something to fix, number ' || g, 1 + g % 4,
       CASE WHEN g % 2 = 0 THEN :done ELSE :open END, 'Bench',
       :now - (g % 1000) * interval '1 hour', :now - (g % 1000) * interval '1 hour',
       CASE WHEN g % 2 = 0 THEN :now - interval '2 days' - (g % 500) * interval '1 hour'
            WHEN g % 10 = 1 THEN :now - interval '1 hour' END,
       false, false
FROM generate_series(1, :n) AS g
"""


def seed(app, n: int, now: datetime) -> None:
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("INSERT INTO board_columns (name, position, is_done_column, created_at) VALUES "
                          "('New', 0, false, :now), ('Done', 1, true, :now)"), {"now": now})
        ids = dict(conn.execute(text("SELECT name, id FROM board_columns")).all())
        conn.execute(text(SEED), {"n": n, "now": now, "done": ids["Done"], "open": ids["New"]})


def rewind(app) -> None:
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE tickets SET is_archived = false, archived_at = NULL WHERE is_archived"))
            conn.execute(text("DELETE FROM ticket_events WHERE kind = 'archived'"))
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE tickets")
            conn.exec_driver_sql("VACUUM ANALYZE ticket_events")


def timed(fn) -> tuple[float, object]:
    start = perf_counter()
    result = fn()
    return perf_counter() - start, result


def bare_update(app, now: datetime) -> int:
    with app.app_context(), db.engine.begin() as conn:
        return conn.execute(text("UPDATE tickets SET is_archived = true, archived_at = :now, updated_at = :now "
                                 "WHERE is_archived = false AND done_at < :cutoff AND NOT is_recurring"),
                            {"now": now, "cutoff": now - timedelta(hours=HOURS)}).rowcount


def empty_pass_ms(app, now: datetime, repeat: int = 20) -> float:
    with app.app_context():
        times = []
        for _ in range(repeat):
            elapsed, outcome = timed(lambda: archive_done(HOURS, now=now))
            assert outcome.archived == 0
            times.append(elapsed * 1000)
        return statistics.median(times)


def plan_of_empty_pass(app, now: datetime) -> list[str]:
    with app.app_context(), db.engine.connect() as conn:
        rows = conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF) SELECT id FROM tickets WHERE is_archived = false "
                                 "AND done_at < :cutoff AND NOT is_recurring"),
                            {"cutoff": now - timedelta(hours=HOURS)}).all()
        return [r[0] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    ours, bare, settles, empty_with, empty_without = [], [], [], [], []
    with common.postgres_database() as url:
        app = common.bench_app(url)
        common.migrate(app)
        elapsed, _ = timed(lambda: seed(app, args.tickets, now))
        print(f"seeded {args.tickets:,} tickets in {elapsed:.1f} s", flush=True)
        archived = 0
        for run in range(args.runs):
            rewind(app)
            with app.app_context():
                elapsed, outcome = timed(lambda: archive_done(HOURS, now=now))
                settled, _ = timed(lambda done=outcome: settle(done))
            archived = outcome.archived
            ours.append(elapsed)
            settles.append(settled)
            empty_with.append(empty_pass_ms(app, now))
            if run == args.runs - 1:
                plan = plan_of_empty_pass(app, now)
            rewind(app)
            elapsed, count = timed(lambda: bare_update(app, now))
            assert count == archived
            bare.append(elapsed)
            print(f"run {run + 1}/{args.runs}: ours {ours[-1]:.2f} s for {archived:,}, bare UPDATE {bare[-1]:.2f} s, "
                  f"empty pass {empty_with[-1]:.2f} ms", flush=True)
        with app.app_context():
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DROP INDEX ix_tickets_archived_done")
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE tickets")
            empty_without.append(empty_pass_ms(app, now, repeat=5))
            db.engine.dispose()
    o, b = statistics.median(ours), statistics.median(bare)
    ew, ewo = statistics.median(empty_with), statistics.median(empty_without)
    rows = ["| measure | value |", "|---|---|",
            f"| tickets archived per pass | {archived:,} of {args.tickets:,} |",
            f"| ours: archive pass with history events (median of {args.runs}) | {o:.2f} s "
            f"({archived / o:,.0f} rows/s) |",
            f"| baseline: bare UPDATE of the same rows, no history (median of {args.runs}) | {b:.2f} s |",
            f"| ours / bare UPDATE | {o / b:.2f}x |",
            f"| then VACUUM (ANALYZE) tickets, run by the job after a big pass | {statistics.median(settles):.2f} s |",
            f"| empty pass with ix_tickets_archived_done (median of 20) | {ew:.2f} ms |",
            f"| empty pass without the index (median of 5) | {ewo:.1f} ms |",
            "", "| target | value | verdict |", "|---|---|---|",
            f"| pass archiving ~500,000 with history < {TARGET_PASS:g} s | {o:.2f} s | "
            f"{'PASS' if o < TARGET_PASS else 'FAIL'} |",
            f"| empty pass < {TARGET_EMPTY_MS:g} ms | {ew:.2f} ms | {'PASS' if ew < TARGET_EMPTY_MS else 'FAIL'} |"]
    notes = [f"- {args.tickets:,} tickets on PostgreSQL: half in Done for 2-23 days, a tenth of the rest done an "
             "hour ago, the others open; threshold 24 hours. Rewound (and VACUUM ANALYZEd) before every pass.",
             "- Plan of the empty pass:", "", "```", *plan, "```"]
    print("\n" + "\n".join(rows + [""] + notes))
    if args.write_results:
        common.write_section(SECTION, [*common.section_head(SECTION, "bench/archive.py", common.machine()),
                                       *notes, "", *rows])
    if o >= TARGET_PASS or ew >= TARGET_EMPTY_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
