"""Email benchmark: 1,000 notifications through the outbox and real workers to a local SMTP server.

A throwaway PostgreSQL database, Redis database 13 (flushed before and after) and an
aiosmtpd server in this process. Each run writes ``--messages`` outbox rows in one
transaction (which queues their send jobs on commit: ``send_emails`` batches of up to
``itsm.mail.outbox.BATCH_SIZE`` rows), starts ``flask worker --concurrency 2`` and times until the
SMTP server holds every message and every row is *sent*. The baseline measured in the same
run is smtplib sending the same number of messages straight to the server, one connection
each, as Flask-Mail does without a kept connection: the price of the outbox (claims, a mark
per message, the jobs) is the difference. After the runs, the per-message costs of a batch
are measured inline in this process (``--breakdown`` messages).
Target: at least 200 messages/s.

    .venv/bin/python bench/outbox.py --write-results
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as bench/outbox.py

import argparse
import os
import smtplib
import statistics
import tempfile
import time
from email.message import EmailMessage as Mime

from sqlalchemy import delete, func, select

from bench import common
from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.outbox import BATCH_SIZE, insert_rows, queue_email, rendered
from itsm.mail.tasks import CLAIM_GROUP
from tests.mailserver import MailServer

SECTION = "## Email (bench/outbox.py)"
REDIS_URL = "redis://127.0.0.1:6379/11"
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


def breakdown(app, server: MailServer, n: int, rounds: int = 5) -> dict[str, float]:
    """Milliseconds per message of a batch's steps, inline as a worker process runs them (kept database
    and SMTP connections): the claim (one per CLAIM_GROUP rows), Flask-Mail's MIME build, the SMTP
    exchange (aiosmtpd runs in this process) and the mark. ``n`` messages in ``rounds`` rounds; each step's
    figure is its best round, the least disturbed by whatever else runs on the machine. Run last: it sets
    this process up as a worker."""
    from flask_mail import Message

    from itsm.mail import sending
    from jobs import dbconn

    dbconn.keep_connections(async_commit=app.config["JOBS_AUDIT_ASYNC_COMMIT"])
    sending.keep_connections()
    server.messages.clear()
    per_round = max(CLAIM_GROUP, n // rounds)
    best: dict[str, float] = {}
    clock = time.perf_counter
    with app.app_context():
        for _ in range(rounds):
            with db.engine.begin() as conn:
                ids = insert_rows(conn, [rendered("test", f"user{i}@example.com", f"Bench {i}", "test",
                                                  sender="bench") for i in range(per_round)])
            spent = dict.fromkeys(("claim", "mime", "deliver", "mark"), 0.0)
            for start in range(0, per_round, CLAIM_GROUP):
                t0 = clock()
                rows = sending.claim_many(ids[start:start + CLAIM_GROUP], "breakdown")
                spent["claim"] += clock() - t0
                for row in rows:
                    t0 = clock()
                    Message(subject=row.subject, recipients=[row.to_address], body=row.body_text,
                            html=row.body_html, sender=app.config["MAIL_DEFAULT_SENDER"]).as_bytes()  # deliver's
                    t1 = clock()
                    sending.deliver(row)
                    t2 = clock()
                    sending.mark_sent(row.id)
                    t3 = clock()
                    spent["mime"] += t1 - t0
                    spent["deliver"] += t2 - t1
                    spent["mark"] += t3 - t2
            spent["smtp"] = spent.pop("deliver") - spent["mime"]
            for step, seconds in spent.items():
                best[step] = min(best.get(step, float("inf")), seconds / per_round * 1000)
        sending.drop_connection()
    assert len(server.messages) == rounds * per_round
    return {f"claim (one durable commit per {CLAIM_GROUP} rows)": best["claim"],
            "Flask-Mail MIME build (`Message.as_bytes`)": best["mime"],
            "SMTP exchange on a kept connection (deliver minus MIME)": best["smtp"],
            "mark sent (asynchronous commit)": best["mark"],
            "sum": sum(best.values())}


ANALYSIS = (
    "Before batching this was 132 messages/s (2026-11-21): a `send_email` job per message, each with a "
    "durable claim and a durable mark (~1.3 ms each), the job's dequeue and audit, and on the enqueue side a "
    "Redis job and an audit row per message.\n\n"
    "Batching: one commit (or one flush_outbox pass) with more than one row queues `send_emails` jobs of up "
    f"to {BATCH_SIZE} rows; a single row still goes to `send_email`. A batch claims {CLAIM_GROUP} rows at a "
    "time in one durable UPDATE ... RETURNING (rows already sent, being sent or failed are skipped), sends "
    "each on the worker's kept SMTP connection and marks it sent right after, on the asynchronous-commit "
    "connection (a lost mark leaves the row \"sending\", which settle_stale_sending fails as \"may or may not "
    "have been delivered\": never sent twice). That removes, per message, a job (dequeue, attempt count, audit "
    "row), most of a durable claim, the wait for the mark's WAL flush and the enqueue side's Redis job and "
    "audit row. What is left is mostly Flask-Mail's MIME build and the SMTP exchange (table above; aiosmtpd "
    "runs in the measuring process), and the two workers, aiosmtpd and PostgreSQL share the two CPUs. A "
    "retryable SMTP error stops a batch: its untried rows go back as they were (status, attempt count) and "
    "every unsent row gets its own `send_email` job with the full retry schedule. A worker that dies "
    f"mid-batch leaves at most its claimed group (<= {CLAIM_GROUP} rows) \"sending\", to be failed for an "
    "admin to retry; late acknowledgement runs the batch again for the rows it had not claimed.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--breakdown", type=int, default=500, help="messages for the inline per-message costs")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    server = MailServer()
    server.start()
    times, base = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="itsm-bench-email-") as tmp, common.flushed(REDIS_URL), \
                common.postgres_database() as url:
            log = Path(tmp) / "worker.log"
            app = common.bench_app(url, REDIS_URL=REDIS_URL, MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port,
                                   MAIL_DEFAULT_SENDER="desk@example.com")
            common.migrate(app)
            with common.log_tail_on_error(log):
                for run in range(args.runs):
                    times.append(ours(app, url, server, args.messages, log, args.concurrency))
                    base.append(baseline(server, args.messages))
                    print(f"run {run + 1}/{args.runs}: outbox + worker {args.messages / times[-1]:.0f} msg/s, "
                          f"smtplib loop {args.messages / base[-1]:.0f} msg/s", flush=True)
            costs = breakdown(app, server, args.breakdown)
            with app.app_context():
                db.engine.dispose()
    finally:
        server.close()
    rate, base_rate = args.messages / statistics.median(times), args.messages / statistics.median(base)
    each = ", ".join(f"{args.messages / t:.0f}" for t in times)
    each_base = ", ".join(f"{args.messages / t:.0f}" for t in base)
    rows = [f"| measure (median of {args.runs}) | value | each run |", "|---|---|---|",
            f"| outbox -> `send_emails` batch jobs -> `flask worker --concurrency {args.concurrency}` -> SMTP "
            f"| {rate:.0f} messages/s | {each} |",
            f"| baseline: smtplib loop, one connection per message, in-process | {base_rate:.0f} messages/s "
            f"| {each_base} |",
            f"| ratio | {rate / base_rate:.2f}x | |", "", "| target | value | verdict |", "|---|---|---|",
            f"| at least {TARGET:g} messages/s | {rate:.0f} | {'PASS' if rate >= TARGET else 'FAIL'} |", "",
            f"| per message, inline, {args.breakdown} messages (best of 5 rounds) | ms |", "|---|---:|",
            *(f"| {name} | {value:.2f} |" for name, value in costs.items())]
    notes = [f"- {args.messages:,} test emails to distinct addresses, written in one transaction (the send jobs "
             "are queued on commit); timed from the first write until the local aiosmtpd server holds every "
             "message and every outbox row is marked sent. PostgreSQL, Redis, aiosmtpd on this machine; "
             f"1-min load average {load:.2f} at start (the machine is shared: see each run)."]
    print("\n" + "\n".join(rows + [""] + notes + ["", ANALYSIS]))
    if args.write_results:
        common.write_section(SECTION, [*common.section_head(SECTION, "bench/outbox.py", common.machine()),
                                       *notes, "", *rows, "", ANALYSIS])
    if rate < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
