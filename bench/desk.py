"""Desk benchmark: server time of the ticket list, filters, search, deep paging and the board (also filtered).

For SQLite (a temp file) and PostgreSQL (a throwaway ``itsm_bench_<random>`` database on
127.0.0.1:5432, dropped at the end) it builds the schema with the migrations, seeds
100,000 tickets set-based, logs in through the Flask test client and times each page
(3 warmups, then ``--repeat`` requests, all in ``--runs`` rounds; the figures are the
median across runs). ``/healthz`` through the same client is the framework baseline.
On PostgreSQL it also prints EXPLAIN (ANALYZE, BUFFERS) summaries of the list queries.
Target: p95 under 50 ms for every page on PostgreSQL.

    .venv/bin/python bench/desk.py --write-results            # full run, updates bench/RESULTS.md
    .venv/bin/python bench/desk.py --tickets 5000 --db sqlite  # quick look
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as bench/desk.py

from sqlalchemy import event, insert, text

from bench import common
from itsm.board.models import BoardColumn
from itsm.extensions import db
from itsm.tickets.models import Ticket, TicketEvent
from itsm.users.models import User

SECTION = "## Desk (bench/desk.py)"
TARGET_MS = 50.0
ADMIN_EMAIL, ADMIN_PASSWORD = "bench-admin@example.com", "bench-admin-pass"
COLUMNS = (("New", False), ("In progress", False), ("Waiting", False), ("Done", True))
SUBJECTS = ("printer", "laptop", "VPN", "email", "Outlook", "monitor", "keyboard", "Wi-Fi", "password",
            "badge reader", "desk phone", "Teams", "SharePoint", "scanner", "projector", "docking station",
            "license", "shared drive", "mouse", "headset", "calendar", "SAP", "payroll portal", "webcam", "CRM")
PROBLEMS = ("is not working", "keeps disconnecting", "is very slow", "shows an error", "needs replacing",
            "cannot be reached", "stopped syncing", "asks for a reset", "was set up wrong", "is missing")
PLACES = ("on floor 2", "in room 314", "in the Berlin office", "at reception", "for the new starter",
          "after the update", "since Monday", "", "", "")
EXTRAS = ("Happens several times a day.", "Error code {n} is shown.", "Please call back on extension {n}.",
          "Needed before the board meeting.", "Other people on the team see the same thing.",
          "It worked fine last week.", "A screenshot is attached.")
CATEGORIES = ("Hardware", "Software", "Network", "Access", "Other")


def generate(n: int, users: int, rng: random.Random) -> tuple[list, list, dict]:
    """Ticket rows, event rows and the counts the pages should show."""
    now = datetime.now(UTC)
    year = 365 * 86400
    created = sorted(now - timedelta(seconds=rng.uniform(0, year)) for _ in range(n))
    tickets, events = [], []
    expected = {"open": 0, "printer": 0, "filtered": 0, "lanes": [0] * len(COLUMNS)}
    for i, created_at in enumerate(created, start=1):
        subject, column = rng.choice(SUBJECTS), rng.randint(1, len(COLUMNS))
        title = f"{subject[0].upper()}{subject[1:]} {rng.choice(PROBLEMS)} {rng.choice(PLACES)}".strip()
        parts = [f"The {subject} {rng.choice(PROBLEMS)}."]
        if rng.random() < 0.3:
            parts.append(f"Tried restarting the {rng.choice(SUBJECTS)} already.")
        parts += [e.format(n=rng.randint(100, 9999)) for e in rng.sample(EXTRAS, rng.randint(1, 3))]
        updated_at = created_at + (now - created_at) * rng.random() ** 2
        archived = column == len(COLUMNS) and rng.random() < 0.4  # 40% of Done: 10% of all tickets
        row = {"id": i, "title": title, "description": " ".join(parts), "priority": rng.randint(1, 4),
               "column_id": column, "assignee_id": rng.randint(1, users) if rng.random() < 0.7 else None,
               "created_by_id": rng.randint(1, users), "requester_email": f"user{rng.randint(1, 5000)}@example.com",
               "category": rng.choice(CATEGORIES), "created_at": created_at, "updated_at": updated_at,
               "done_at": updated_at if column == len(COLUMNS) else None, "is_archived": archived,
               "archived_at": min(now, updated_at + timedelta(days=1)) if archived else None}
        tickets.append(row)
        events.append({"id": i, "ticket_id": i, "actor_id": row["created_by_id"], "kind": "created",
                       "changes": {"title": [None, title], "column": [None, COLUMNS[column - 1][0]]},
                       "created_at": created_at})
        if not archived:
            expected["open"] += 1
            expected["lanes"][column - 1] += 1
            expected["printer"] += "printer" in (title + " " + row["description"]).lower()
            expected["filtered"] += column == 2 and row["priority"] == 3
    return tickets, events, expected


def seed(kind: str, tickets: list, events: list, users: int) -> None:
    now = datetime.now(UTC)
    admin, agent = User(), User()
    admin.set_password(ADMIN_PASSWORD)
    agent.set_password("bench-agent-pass")
    with db.engine.begin() as conn:
        conn.execute(insert(BoardColumn.__table__), [
            {"id": i, "name": name, "position": i, "is_done_column": done, "created_at": now}
            for i, (name, done) in enumerate(COLUMNS, start=1)])
        conn.execute(insert(User.__table__), [
            {"id": i, "email": ADMIN_EMAIL if i == 1 else f"agent{i}@example.com", "name": f"Agent {i:02d}",
             "password_hash": (admin if i == 1 else agent).password_hash, "role": "admin" if i == 1 else "agent",
             "active": True, "created_at": now} for i in range(1, users + 1)])
        for table, rows in ((Ticket.__table__, tickets), (TicketEvent.__table__, events)):
            for start in range(0, len(rows), 10_000):
                conn.execute(insert(table), rows[start:start + 10_000])
        if kind == "postgresql":  # explicit ids: move the sequences past them
            for table in ("board_columns", "users", "tickets", "ticket_events"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))


def analyze(kind: str) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if kind == "postgresql" else "ANALYZE"))


def timed(client, url: str, repeat: int) -> tuple[float, float]:
    """Median and p95 (nearest rank) in ms of ``repeat`` requests after 3 warmups."""
    times = []
    for i in range(3 + repeat):
        start = perf_counter()
        response = client.get(url)
        if i >= 3:
            times.append((perf_counter() - start) * 1000)
        assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    return statistics.median(times), common.percentile(times, 0.95)


def check_pages(client, pages: dict, expected: dict, per_page: int) -> list[str]:
    """Compare what the pages show with the generated data; returns problems found."""
    problems = []
    for label, key in (("list", "open"), ("filtered", "filtered"), ("search", "printer")):
        shown = re.search(r"(\d+) tickets? ·", client.get(pages[label]).text)  # "N tickets · sorted ..."
        if not shown or int(shown.group(1)) != expected[key]:
            problems.append(f"{label}: shows {shown and shown.group(1)} tickets, expected {expected[key]}")
    last = math.ceil(expected["open"] / per_page)
    deep = f"Page {min(500, last)} of {last}"
    if deep not in client.get(pages[f"page {min(500, last)}"]).text:
        problems.append(f"deep page: the pager does not say {deep!r}")
    board = client.get("/board").text
    lanes = [int(c) for c in re.findall(r'<span class="count">(\d+)</span>', board)]
    if lanes != expected["lanes"]:
        problems.append(f"board: lane counts {lanes}, expected {expected['lanes']}")
    shown = [re.findall(r'data-priority="(\d)"', lane) for lane in board.split('<section class="lane')[1:]]
    if any(len(cards) != 25 or cards != sorted(cards, reverse=True) for cards in shown):
        problems.append(f"board: not 25 cards per lane, most urgent first: {shown}")
    return problems


def explain(app, client, url: str) -> list[str]:
    """Run the page once, then EXPLAIN (ANALYZE, BUFFERS) each tickets query it sent."""
    with app.app_context():
        engine = db.engine
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if re.search(r"\bFROM tickets\b", statement):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    lines = []
    with app.app_context():
        for statement, parameters in captured:
            plan = db.session.connection().exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars().all()
            indexes = sorted(set(re.findall(r"(?:Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)?"
                                            r" (?:using|on) (\w+)", "\n".join(plan))))
            top = re.sub(r"\s*\(cost=[^)]*\)", "", plan[0]).strip()
            took = next((p.strip() for p in plan if p.startswith("Execution Time")), "")
            kind = "count" if statement.lstrip().upper().startswith("SELECT COUNT") else "rows"
            lines.append(f"{url} [{kind}] {top}; {took}; "
                         f"index: {', '.join(indexes) if indexes else 'NONE (no index scan)'}")
    return lines


def bench_db(kind: str, data: tuple, args) -> dict:
    tickets, events, expected = data
    with common.scratch_database(kind) as url:
        app = common.bench_app(url, WTF_CSRF_ENABLED=False)
        try:
            common.migrate(app)
            with app.app_context():
                start = perf_counter()
                seed(kind, tickets, events, args.users)
                seed_s = perf_counter() - start
                start = perf_counter()
                analyze(kind)
                analyze_s = perf_counter() - start
            print(f"{kind}: seeded {len(tickets)} tickets + {len(events)} events in {seed_s:.1f} s, "
                  f"{'VACUUM ANALYZE' if kind == 'postgresql' else 'ANALYZE'} {analyze_s:.1f} s", flush=True)
            # No app context is held from here on: each request gets its own, as in production.
            client = app.test_client()
            login = client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            assert login.status_code == 302, f"login failed: HTTP {login.status_code}"
            deep = min(500, math.ceil(expected["open"] / app.config["TICKETS_PER_PAGE"]))  # 500 at 100k tickets
            pages = {"healthz": "/healthz", "list": "/tickets", "filtered": "/tickets?column=2&priority=high",
                     "search": "/tickets?q=printer", f"page {deep}": f"/tickets?page={deep}", "board": "/board",
                     "least urgent": "/tickets?sort=priority_lowest", f"least recently updated, page {deep}":
                     f"/tickets?sort=updated_oldest&page={deep}",
                     "board filtered": "/board?assignee=3&priority=high", "board search": "/board?q=printer"}
            problems = check_pages(client, pages, expected, app.config["TICKETS_PER_PAGE"])
            figures = {label: [] for label in pages}
            for run in range(args.runs):
                for label, page in pages.items():
                    figures[label].append(timed(client, page, args.repeat))
                print(f"{kind}: run {run + 1}/{args.runs} done", flush=True)
            # The CSV export of every open ticket, streamed: one request, read to the end.
            start = perf_counter()
            response = client.get("/tickets/export.csv")
            lines = response.get_data().count(b"\r\n")
            export = (perf_counter() - start, lines - 1)
            if export[1] != expected["open"]:
                problems.append(f"export: {export[1]} rows, expected {expected['open']}")
            print(f"{kind}: CSV export of {export[1]} tickets in {export[0]:.2f} s", flush=True)
            plans = []
            if kind == "postgresql":
                for label in ("list", "search", f"page {deep}"):
                    plans += explain(app, client, pages[label])
        finally:
            with app.app_context():
                db.engine.dispose()
    summary = {label: (statistics.median(m for m, _ in runs), statistics.median(p for _, p in runs))
               for label, runs in figures.items()}
    return {"seed_s": seed_s, "analyze_s": analyze_s, "pages": summary, "plans": plans, "problems": problems,
            "export": export}


def table(results: dict) -> list[str]:
    rows = ["| DB | page | median ms | p95 ms | p95 / healthz p95 | target: PG p95 < 50 ms |",
            "|---|---|---:|---:|---:|---|"]
    for kind, result in results.items():
        base = result["pages"]["healthz"][1]
        for label, (median, p) in result["pages"].items():
            verdict = "" if kind != "postgresql" or label == "healthz" else ("PASS" if p < TARGET_MS else "FAIL")
            rows.append(f"| {kind} | {label} | {median:.1f} | {p:.1f} | {p / base:.1f}x | {verdict} |")
    return rows


def write_results(results: dict, args, generate_s: float) -> None:
    lines = common.section_head(SECTION, "bench/desk.py", common.machine())
    lines += [f"- Data: {args.tickets} tickets (~90% open, 10% archived), {args.tickets} ticket_events, "
              f"{args.users} users, 4 columns; generated in Python in {generate_s:.1f} s"]
    lines += [f"- Seeding {kind}: {r['seed_s']:.1f} s insert + {r['analyze_s']:.1f} s "
              f"{'VACUUM ANALYZE' if kind == 'postgresql' else 'ANALYZE'}" for kind, r in results.items()]
    lines += [f"- Method: Flask test client in-process, logged in as admin; per page 3 warmups then {args.repeat} "
              f"requests; figures are the median across {args.runs} runs of each run's median and p95. "
              "Baseline: `/healthz` through the same client in the same run.", "", *table(results), ""]
    for kind, result in results.items():
        lines += [f"- {kind} check: {p}" for p in result["problems"]] or [f"- {kind}: page contents checked OK"]
    lines += [f"- {kind}: CSV export of the {r['export'][1]} open tickets (`/tickets/export.csv`, streamed) in "
              f"{r['export'][0]:.2f} s" for kind, r in results.items()]
    plans = [line for r in results.values() for line in r["plans"]]
    if plans:
        lines += ["", "PostgreSQL EXPLAIN (ANALYZE, BUFFERS) summary:", "", "```", *plans, "```"]
    common.write_section(SECTION, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    start = perf_counter()
    data = generate(args.tickets, args.users, random.Random(42))
    generate_s = perf_counter() - start
    print(f"generated {args.tickets} tickets in {generate_s:.1f} s "
          f"({data[2]['printer']} open ones mention 'printer')", flush=True)
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    results = {kind: bench_db(kind, data, args) for kind in kinds}
    print("\n" + "\n".join(table(results)))
    for kind, result in results.items():
        for problem in result["problems"]:
            print(f"{kind}: CHECK FAILED {problem}")
    for line in (line for r in results.values() for line in r["plans"]):
        print(line)
    if args.write_results:
        write_results(results, args, generate_s)


if __name__ == "__main__":
    main()
