"""Email benchmark: 1,000 notifications through the outbox and real workers to a local SMTP server.

A throwaway PostgreSQL database, Redis database 13 (flushed before and after) and an
aiosmtpd server in this process. Each run writes ``--messages`` outbox rows in one
transaction (which queues their send jobs on commit), starts ``flask worker
--concurrency 2`` and times until the SMTP server holds every message and every row is
*sent*. The baseline measured in the same run is smtplib sending the same number of
messages straight to the server, one connection each, as Flask-Mail does: the price of
the outbox (a claim and a mark per message, a job each) is the difference.
Target: at least 200 messages/s.

    .venv/bin/python bench/email.py --write-results
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as bench/email.py, this file's folder comes first on sys.path and would shadow the standard
# library's ``email`` package: put the repository there instead (hence the imports below it).
sys.path[0] = str(Path(__file__).resolve().parents[1])
# ruff: noqa: E402

import argparse
import smtplib
import statistics
import tempfile
import time
from email.message import EmailMessage as Mime

from sqlalchemy import delete, func, select

from bench import common
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import queue_email
from tests.mailserver import MailServer

SECTION = "## Email (bench/email.py)"
REDIS_URL = "redis://127.0.0.1:6379/13"
TARGET = 200.0


def sent_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(EmailMessage).where(EmailMessage.status == "sent"))


def ours(app, url: str, server: MailServer, n: int, log: Path, concurrency: int) -> float:
    server.messages.clear()
    with app.app_context():
        db.session.execute(delete(EmailMessage))
        db.session.commit()
    env = common.flask_env(url, REDIS_URL, MAIL_SERVER="127.0.0.1", MAIL_PORT=str(server.port),
                           MAIL_DEFAULT_SENDER="desk@example.com", LOG_LEVEL="WARNING")
    with common.running([[sys.executable, "-m", "flask", "worker", "--concurrency", str(concurrency)]], env, log):
        time.sleep(3)  # let the worker processes start before the clock does
        start = time.perf_counter()
        with app.app_context():
            for i in range(n):
                queue_email("test", f"user{i}@example.com", f"Bench {i}", "test", sender="bench")
            db.session.commit()  # the send jobs are queued here
        deadline = start + 300
        while (len(server.messages) < n or sent_count(app) < n) and time.perf_counter() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    if len(server.messages) != n or sent_count(app) != n:
        raise SystemExit(f"only {len(server.messages)} of {n} messages arrived ({sent_count(app)} marked sent)")
    return elapsed


def baseline(server: MailServer, n: int) -> float:
    server.messages.clear()
    start = time.perf_counter()
    for i in range(n):
        msg = Mime()
        msg["From"], msg["To"], msg["Subject"] = "desk@example.com", f"user{i}@example.com", f"Bench {i}"
        msg.set_content("This is a test email from itsm.")
        with smtplib.SMTP("127.0.0.1", server.port) as smtp:
            smtp.send_message(msg)
    elapsed = time.perf_counter() - start
    assert len(server.messages) == n
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    server = MailServer()
    server.start()
    times, base = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="itsm-bench-email-") as tmp, common.flushed(REDIS_URL), \
                common.postgres_database() as url:
            log = Path(tmp) / "worker.log"
            app = common.bench_app(url, REDIS_URL=REDIS_URL, MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port)
            common.migrate(app)
            with common.log_tail_on_error(log):
                for run in range(args.runs):
                    times.append(ours(app, url, server, args.messages, log, args.concurrency))
                    base.append(baseline(server, args.messages))
                    print(f"run {run + 1}/{args.runs}: outbox + worker {args.messages / times[-1]:.0f} msg/s, "
                          f"smtplib loop {args.messages / base[-1]:.0f} msg/s", flush=True)
            with app.app_context():
                db.engine.dispose()
    finally:
        server.stop()
    rate, base_rate = args.messages / statistics.median(times), args.messages / statistics.median(base)
    rows = [f"| measure (median of {args.runs}) | value |", "|---|---|",
            f"| outbox -> `send_email` jobs -> `flask worker --concurrency {args.concurrency}` -> SMTP "
            f"| {rate:.0f} messages/s |",
            f"| baseline: smtplib loop, one connection per message, in-process | {base_rate:.0f} messages/s |",
            f"| ratio | {rate / base_rate:.2f}x |", "", "| target | value | verdict |", "|---|---|---|",
            f"| at least {TARGET:g} messages/s | {rate:.0f} | {'PASS' if rate >= TARGET else 'FAIL'} |"]
    notes = [f"- {args.messages:,} test emails to distinct addresses, written in one transaction (the send jobs "
             "are queued on commit); timed from the first write until the local aiosmtpd server holds every "
             "message and every outbox row is marked sent. PostgreSQL, Redis, aiosmtpd on this machine."]
    print("\n" + "\n".join(rows + [""] + notes))
    if args.write_results:
        common.write_section(SECTION, [*common.section_head(SECTION, "bench/email.py", common.machine()),
                                       *notes, "", *rows])
    if rate < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
