"""Shared pieces of the fault tests: the job audit, a Redis that can go away, and a real web server.

Every test here runs real ``flask worker`` / ``flask scheduler`` / ``gunicorn`` processes (see
``tests.processes``) against the tests' own Redis database and the session's databases, injects one
fault, and checks what must survive it. They take seconds each (the two-schedulers soak a minute);
``-k "not reliability"`` leaves the whole folder out.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from jobs.models import JobRun
from tests.conftest import PG_ADMIN_URL, TEST_REDIS_URL
from tests.mailserver import free_port
from tests.processes import ROOT, process_env, wait_for
from tests.relay import TcpRelay

FINAL = ("succeeded", "failed", "lost", "skipped")


def job_runs(app, job_id: str | None = None, task_name: str | None = None) -> list[JobRun]:
    """Audit rows of one job (by attempt) or of one task (by job, attempt), detached from the session."""
    with app.app_context():
        query = sa.select(JobRun).order_by(JobRun.job_id, JobRun.attempt)
        if job_id is not None:
            query = query.where(JobRun.job_id == job_id)
        if task_name is not None:
            query = query.where(JobRun.task_name == task_name)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def final_runs(app, job_id: str, count: int, timeout: float = 60) -> list[JobRun]:
    """Wait until the job has ``count`` attempts and the last one is final, or it failed for good
    sooner (then the caller's assertions say how)."""
    def done():
        rows = job_runs(app, job_id)
        finished = len(rows) == count and rows[-1].status in FINAL
        return rows if finished or any(r.status == "failed" for r in rows) else None
    return wait_for(done, timeout=timeout, interval=0.1, message=f"{count} finished attempt(s) of job {job_id}")


def scalar(app, statement):
    with app.app_context():
        return db.session.scalar(statement)


def tickets_titled(app, key: str) -> int:
    """How many tickets a test task wrote under ``key`` ("<key> <n>") are committed."""
    from itsm.tickets.models import Ticket

    return scalar(app, sa.select(sa.func.count(Ticket.id)).where(Ticket.title.like(f"{key} %")))


def admins_told_of_failure(app, task_name: str, timeout: float) -> str:
    """The address the failure email about ``task_name`` went to. The failure hooks write it just after
    the audit row says failed: wait for it, do not race it."""
    from itsm.mail.models import EmailMessage

    told = sa.select(EmailMessage.to_address).where(EmailMessage.kind == "system_failure",
                                                    EmailMessage.subject.contains(task_name))
    return wait_for(lambda: scalar(app, told), timeout=timeout, message="the admins' failure email")


def queues_idle(redis) -> bool:
    """Nothing waiting in the tests' Redis: no queued, started or scheduled RQ job."""
    from rq import Queue
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry

    for name in ("high", "default", "low"):
        queue = Queue(name, connection=redis)
        if queue.count or StartedJobRegistry(queue=queue).count or ScheduledJobRegistry(queue=queue).count:
            return False
    return True


def require_postgresql(database_url: str, why: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip(f"PostgreSQL only: {why}")


@pytest.fixture
def pg_admin(database_url):
    """An AUTOCOMMIT connection to the PostgreSQL server as the superuser, apart from the app's pools."""
    require_postgresql(database_url, "it kills server connections (pg_terminate_backend); SQLite has none")
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        yield conn
    engine.dispose()


class RedisOutage(TcpRelay):
    """A TCP relay in front of the tests' Redis database, for processes to connect through.

    ``cut()`` is Redis going down: every relayed connection is dropped and new ones are refused.
    ``restore()`` is Redis answering again on the same address. Together with a FLUSHDB of the tests'
    own database in between, the processes see what a Redis restart without persistence looks like,
    while the real server and its other databases are left alone.
    """

    def __init__(self, redis_url: str = TEST_REDIS_URL) -> None:
        super().__init__(redis_url)


@pytest.fixture
def redis_outage(redis):
    relay = RedisOutage()
    relay.restore()
    yield relay
    relay.cut()


class WebServer:
    """``gunicorn wsgi:app`` as the Procfile runs it (sync workers), on a free loopback port, or on ``host``
    and ``port`` under ``prefix`` (see ``Processes.start``), e.g. in another machine's network namespace."""

    def __init__(self, procs, workers: int = 2, host: str = "127.0.0.1", port: int | None = None,
                 prefix: Sequence[str] = (), **env: str) -> None:
        self.host, self.port = host, port or free_port()
        self.url = f"http://{self.host}:{self.port}"
        log = procs.log_dir / f"proc-{len(procs.started)}.log"
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"{self.host}:{self.port}",
                 "--workers", str(workers), "--access-logfile", "-", "--graceful-timeout", "20", "--no-control-socket"],
                cwd=ROOT, env=process_env(procs.database_url, procs.redis_url, **env), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        procs.started.append((self.proc, log))  # stopped (SIGTERM to its group) with the other processes

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        def answers() -> bool:
            assert self.proc.poll() is None, "gunicorn exited"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:  # noqa: S310
                    return response.status == 200
            except OSError:
                return False
        wait_for(answers, timeout=timeout, interval=0.2, message="gunicorn to answer /healthz")

    def login(self, email: str = "admin@example.com") -> tuple[str, str]:
        """Log in through the form like a browser: (the Cookie header of the session, its CSRF token)."""
        import http.client
        from http.cookies import SimpleCookie
        from urllib.parse import urlencode

        from tests.conftest import CSRF_RE
        from tests.factories import PASSWORD

        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request("GET", "/login")
        response = conn.getresponse()
        page = response.read().decode()
        cookie = SimpleCookie(response.headers["Set-Cookie"])
        token = CSRF_RE.search(page).group(1)
        form = urlencode({"email": email, "password": PASSWORD, "csrf_token": token})
        conn.request("POST", "/login", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"session={cookie['session'].value}"})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 302, response.status
        return f"session={SimpleCookie(response.headers['Set-Cookie'])['session'].value}", token
