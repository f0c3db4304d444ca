"""Fault: the web server under concurrent load while a worker writes to the same database."""

from __future__ import annotations

import http.client
import threading
import time
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import sqlalchemy as sa

from itsm.extensions import db
from itsm.recurring.models import TicketRecurrence
from itsm.recurring.tasks import process_recurring_tickets
from itsm.tickets.models import Ticket
from jobs.models import JobRun
from tests import factories, jobtasks
from tests.conftest import CSRF_RE
from tests.processes import wait_for
from tests.reliability.conftest import WebServer, queues_idle, scalar

THREADS = 8
REQUESTS_PER_THREAD = 40
TEMPLATES = 200


def seed(app) -> int:
    """40 open tickets on the board and TEMPLATES recurring templates due now; returns a ticket id."""
    due = datetime.now(UTC) - timedelta(minutes=1)
    with app.app_context():
        column = factories.column("New").id
        ids = db.session.scalars(sa.insert(Ticket).returning(Ticket.id),
                                 [{"title": f"Open {n}", "column_id": column} for n in range(40)]).all()
        templates = db.session.scalars(sa.insert(Ticket).returning(Ticket.id), [
            {"title": f"Due {n}", "is_recurring": True, "created_at": due, "updated_at": due}
            for n in range(TEMPLATES)]).all()
        db.session.execute(sa.insert(TicketRecurrence), [
            {"ticket_id": t, "recurrence_interval": "daily", "recurrence_time_zone": "UTC", "recurrence_anchor": due,
             "next_occurrence": due, "recurrence_due_at": due} for t in templates])
        db.session.commit()
        return ids[0]


def login(port: int) -> str:
    """Log in through the form like a browser; returns the Cookie header of the session."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = SimpleCookie(response.headers["Set-Cookie"])
    form = urlencode({"email": "admin@example.com", "password": factories.PASSWORD,
                      "csrf_token": CSRF_RE.search(page).group(1)})
    conn.request("POST", "/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"session={cookie['session'].value}"})
    response = conn.getresponse()
    response.read()
    assert response.status == 302, response.status
    conn.close()
    return f"session={SimpleCookie(response.headers['Set-Cookie'])['session'].value}"


def test_the_web_answers_every_request_while_a_worker_writes(app, procs, redis):
    """Fault: 8 threads x 40 requests at once over loopback to ``gunicorn wsgi:app`` (2 sync workers,
    as the Procfile runs it), logged in, across /board, /tickets, /tickets/<id> and /healthz, while a
    worker opens 200 recurring tickets and runs a steady stream of small jobs (each one an audit
    write) against the same database.

    Must survive: every request is answered, with 200 (no 5xx, no dropped or reset connection, no
    gunicorn worker timeout), and the worker finishes all of its jobs meanwhile.
    """
    ticket_id = seed(app)
    web = WebServer(procs)
    procs.worker()
    web.wait_ready()
    cookie = login(web.port)

    enqueued: list[str] = []
    stop = threading.Event()

    def keep_the_worker_busy() -> None:
        with app.app_context():
            enqueued.append(process_recurring_tickets.delay().id)
            while not stop.is_set():
                enqueued.extend(jobtasks.add.apply_many([((n, n), {}) for n in range(10)]))
                stop.wait(0.05)

    paths = ["/board", "/tickets", f"/tickets/{ticket_id}", "/healthz"]
    results: list[tuple[str, int, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=60)
        for n in range(REQUESTS_PER_THREAD):
            path = paths[(number + n) % len(paths)]
            started = time.monotonic()
            try:
                conn.request("GET", path, headers={"Cookie": cookie})
                response = conn.getresponse()
                response.read()
                outcome = (path, response.status, time.monotonic() - started)
            except (OSError, http.client.HTTPException) as err:
                conn.close()  # a fresh connection for the next request
                with lock:
                    errors.append(f"{path}: {type(err).__name__}: {err}")
                continue
            with lock:
                results.append(outcome)
        conn.close()

    enqueuer = threading.Thread(target=keep_the_worker_busy, daemon=True)
    enqueuer.start()
    wait_for(lambda: len(enqueued) > 20, timeout=30, message="jobs flowing to the worker")
    load_started = datetime.now(UTC)
    clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=300)
    load_ended = datetime.now(UTC)
    stop.set()
    enqueuer.join(timeout=30)
    assert not any(thread.is_alive() for thread in clients), "a client thread never finished"

    assert not errors, errors[:10]
    assert len(results) == THREADS * REQUESTS_PER_THREAD  # every request answered
    bad = [(path, status) for path, status, _ in results if status != 200]
    assert not bad, bad[:10]
    slowest = max(seconds for _, _, seconds in results)
    print(f"{len(results)} requests, slowest {slowest:.2f}s, {len(enqueued)} jobs")

    # The worker really worked during the load, and finished everything.
    wait_for(lambda: queues_idle(redis), timeout=120, interval=0.2, message="the worker to drain its queues")
    succeeded = sa.select(sa.func.count()).select_from(JobRun).where(JobRun.status == "succeeded")
    wait_for(lambda: scalar(app, succeeded) == len(enqueued), timeout=60, interval=0.2,
             message="every job's audit row succeeded")
    during = scalar(app, sa.select(sa.func.count()).select_from(JobRun).where(
        JobRun.finished_at >= load_started, JobRun.finished_at <= load_ended))
    assert during >= 20, f"only {during} jobs ran during the load"
    opened = scalar(app, sa.select(sa.func.count(sa.distinct(Ticket.template_id))).where(
        Ticket.template_id.is_not(None)))
    assert opened == TEMPLATES
    assert scalar(app, sa.select(sa.func.count(Ticket.id)).where(Ticket.template_id.is_not(None))) == TEMPLATES
    log = procs.logs()
    assert "WORKER TIMEOUT" not in log and log.count("Booting worker") == 2  # no gunicorn worker died
