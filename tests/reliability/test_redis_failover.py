"""Fault: the Redis master dies (SIGKILL) under load, and Redis Sentinel promotes its replica, which lacks
the master's last writes (the replication gap). Every process runs on ``REDIS_URL=redis+sentinel://...``."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.schedules import service
from itsm.schedules.models import ScheduleFiring
from itsm.schedules.scheduler import HEARTBEAT_KEY
from itsm.schedules.validation import Definition
from itsm.tickets.models import Ticket
from jobs import liveness
from jobs.exceptions import JobsUnavailableError
from tests import factories, jobtasks
from tests.conftest import service_missing
from tests.processes import wait_for
from tests.reliability.conftest import FINAL, job_runs, queues_idle, require_postgresql
from tests.sentinel import SentinelCluster, redis_server

MESSAGE_ID = re.compile(r"<itsm-outbox-(\d+)[.@]")
TOKEN = "failover-readyz"


@pytest.fixture
def cluster(tmp_path):
    if redis_server() is None:
        service_missing("redis-server (Debian's redis-server package) runs the Sentinels")
    deployment = SentinelCluster(tmp_path / "redis")
    deployment.start()
    yield deployment
    deployment.stop()
    print(deployment.logs())  # shown when the test failed


@pytest.fixture
def app_config(cluster, mailserver):
    return {**mailserver.app_config(), "REDIS_URL": cluster.url(), "READYZ_TOKEN": TOKEN}


def executions(app, key: str) -> Counter:
    with app.app_context():
        titles = db.session.scalars(sa.select(Ticket.title).where(Ticket.title.like(f"{key} %"))).all()
    return Counter(title.removeprefix(f"{key} ") for title in titles)


class Stream:
    """Jobs, emails and countdown jobs sent from this process (the web's code path) while the test goes on:
    what was accepted, and what was refused while no master answered."""

    def __init__(self, app) -> None:
        self.app, self.n = app, 0
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.emails = 0

    def send(self, count: int = 1, email_every: int = 5) -> None:
        with self.app.app_context():
            for _ in range(count):
                self.n += 1
                mark = str(self.n)
                try:
                    jobtasks.record.delay("fo", self.n)
                except JobsUnavailableError:
                    self.refused.append(mark)
                    continue
                self.accepted.append(mark)
                # A ticket with a requester: one notification email, its send job queued on commit. Only while a
                # master answers: one written meanwhile would wait for the every-minute outbox flush.
                if self.n % email_every == 0:
                    factories.make_ticket(f"Mail {self.n}", requester_email=f"r{self.n}@example.com")
                    self.emails += 1

    def batch(self, count: int) -> None:
        """A burst the workers take a moment to get through."""
        with self.app.app_context():
            start = self.n + 1
            jobtasks.record.apply_many([(("fo", n), {}) for n in range(start, start + count)])
        self.accepted += [str(n) for n in range(start, start + count)]
        self.n += count

    def until(self, predicate, timeout: float, message: str, status=None):
        """Keep sending (a job every 20 ms) until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            assert time.monotonic() < deadline, \
                f"timed out after {timeout}s waiting for {message}{f' ({status()})' if status else ''}"
            self.send()
            time.sleep(0.02)  # the pace of the stream (about 50 jobs a second), not a wait for a condition
        return value


@pytest.fixture
def across_hosts(database_url):
    """First, so nothing else is set up for SQLite: Redis Sentinel serves a deployment across hosts, and those
    share one PostgreSQL (a SQLite file is one machine's), so the audit that recovers lost jobs is proved there."""
    require_postgresql(database_url, "Sentinel is for deployments across hosts, which share PostgreSQL")


def test_a_master_killed_under_load_fails_over_with_nothing_lost_or_run_twice(across_hosts, app, client, procs,
                                                                            cluster, mailserver):
    """Fault: a stream of jobs (``t.record``: one ticket per execution), notification emails (the outbox and
    its send jobs, to a real SMTP server) and an every-second schedule (``t.record_job``: one ticket per
    execution, named by the tick's job id) runs through two workers and the scheduler against Redis
    Sentinel. The replica is cut off from the master (what the master accepts from then on never reaches
    it), the stream goes on a few seconds, a burst of jobs is sent and countdown jobs come due, then the
    master is SIGKILLed. The Sentinels promote the replica; nothing is restarted.

    Must survive: everything. Workers, the scheduler and the web find the new master by themselves (jobs,
    ticks and emails sent after the failover run; /readyz names the new master). Every job whose enqueue was
    accepted runs exactly once: the ones the promoted replica never received are enqueued again from the
    job audit (``requeued_at``), and the ones it still holds but that already ran on the old master are not
    run again (the audit says they ran). Every email arrives once; no schedule tick runs twice."""
    mailserver.start()
    with app.app_context():
        service.save(Definition(name="every-second", task="t.record_job", kind="interval", every=1,
                                period="seconds", args=["tick"]))
        db.session.commit()
    env = {"REDIS_URL": cluster.url(), "JOBS_LOST_GRACE_SECONDS": "2", **mailserver.env()}
    procs.start("scheduler", **env)
    procs.worker("--concurrency", "2", **env)
    stream = Stream(app)

    def ran(marks) -> bool:
        done = executions(app, "fo")
        return all(done[m] for m in marks)

    # Before: the stream runs, ticks fire.
    stream.until(lambda: len(executions(app, "fo")) >= 20 and len(executions(app, "tick")) >= 2, timeout=60,
                 message="jobs and ticks to run before the fault")
    readyz = client.get(f"/readyz?token={TOKEN}").get_json()["checks"]["redis"]
    assert readyz["node"] == f"127.0.0.1:{cluster.master.port}" and readyz["service"] == "itsm-test"

    # The gap: the master accepts writes the replica never sees.
    with app.app_context():
        due = datetime.now(UTC) + timedelta(seconds=1.5)
        later = [jobtasks.record.apply_async(("fo-later", n), eta=due).id for n in range(5)]
    cluster.cut_replication()
    in_gap = len(stream.accepted)
    ticks_before_gap = len(executions(app, "tick"))
    stream.until(lambda: len(stream.accepted) - in_gap >= 30 and ran(stream.accepted[in_gap:in_gap + 10])
                 and len(executions(app, "tick")) > ticks_before_gap and len(executions(app, "fo-later")) == 5,
                 timeout=12, message="jobs, a tick and the countdown jobs to run in the gap",
                 status=lambda: f"accepted {len(stream.accepted) - in_gap}, first ten ran "
                                f"{ran(stream.accepted[in_gap:in_gap + 10])}, ticks {len(executions(app, 'tick'))} "
                                f"(before {ticks_before_gap}), countdown jobs ran {len(executions(app, 'fo-later'))}")
    stream.batch(100)
    cluster.master.kill()

    # The failover: Sentinel promotes the replica; the stream goes on (refused while no master answers).
    stream.until(cluster.promoted, timeout=30, message="the Sentinels to promote the replica")
    promoted = len(stream.accepted)
    stream.until(lambda: len(stream.accepted) - promoted >= 20 and ran(stream.accepted[promoted:promoted + 20]),
                 timeout=60, message="jobs sent after the failover to run")
    readyz = client.get(f"/readyz?token={TOKEN}").get_json()["checks"]["redis"]
    assert readyz["ok"] and readyz["node"] == f"127.0.0.1:{cluster.replica.port}"

    # Every accepted job runs (those Redis lost come back from the audit), every email is sent.
    wait_for(lambda: ran(stream.accepted), timeout=90, interval=0.2, message="every accepted job to run")
    wait_for(lambda: len(mailserver.messages) >= stream.emails, timeout=90, message="every email to arrive")
    new_master = cluster.replica.client()
    wait_for(lambda: queues_idle(new_master), timeout=60, message="the queues to empty")
    # Nothing runs again while more ticks fire and the workers' recovery passes (every second) look.
    ticks = len(executions(app, "tick"))
    wait_for(lambda: len(executions(app, "tick")) >= ticks + 4, timeout=30, message="four more ticks")

    done = executions(app, "fo")
    assert [m for m in stream.accepted if done[m] != 1] == []  # 0 lost, 0 run twice
    assert all(done[m] <= 1 for m in stream.refused)  # a refused enqueue may have reached the old master
    assert executions(app, "fo-later") == Counter({str(n): 1 for n in range(5)})
    assert [[(r.attempt, r.status) for r in job_runs(app, job_id)] for job_id in later] == [[(1, "succeeded")]] * 5
    rows = job_runs(app, task_name="t.record")
    # One success per job; a copy Redis handed out again after the attempt ended is recorded as skipped.
    assert Counter(r.job_id for r in rows if r.status == "succeeded") == Counter(set(r.job_id for r in rows))
    assert {r.status for r in rows} <= {"succeeded", "skipped"}
    assert all(r.error_message.startswith("not run again") for r in rows if r.status == "skipped")
    assert {r.attempt for r in rows if r.status == "succeeded"} == {1}
    recovered = [r for r in rows if r.requeued_at is not None]
    assert recovered, "the gap lost no job: the test did not test the recovery"
    with app.app_context():
        emails = db.session.scalars(sa.select(EmailMessage)).all()
        firings = db.session.scalars(sa.select(ScheduleFiring)).all()
    assert len(emails) == stream.emails and {e.status for e in emails} == {"sent"}
    received = Counter(int(MESSAGE_ID.match(m["Message-ID"]).group(1)) for m in mailserver.messages)
    assert received == Counter({e.id: 1 for e in emails})
    ticks_run = executions(app, "tick")
    assert ticks_run and set(ticks_run.values()) == {1}  # no tick ran twice
    assert set(ticks_run) == {f.job_id for f in firings if f.status == "succeeded"}
    assert all(r.status in FINAL for r in job_runs(app, task_name="t.record_job"))
    replays = procs.logs().count("not run again")
    assert replays, "no job that ran on the old master came back: the test did not test the replays"

    # The workers and the scheduler are registered on the new master.
    assert new_master.exists(HEARTBEAT_KEY)
    assert any(w.alive for w in liveness.workers(new_master))
    new_master.close()
    print(f"accepted {len(stream.accepted)}, refused {len(stream.refused)}, recovered {len(recovered)}, "
          f"not run again {replays}, emails {stream.emails}, ticks {len(ticks_run)}")
