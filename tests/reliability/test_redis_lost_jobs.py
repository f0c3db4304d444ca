"""Fault: Redis loses the jobs it held (FLUSHDB, or a restart of a Redis that keeps nothing on disk). The
job audit in the database is the durable record: what it says is queued, and Redis no longer has, is
enqueued again (late acknowledgement) or marked lost with the reason."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.mail.models import EmailMessage
from itsm.mail.tasks import flush_outbox
from itsm.schedules import service
from itsm.schedules.models import ScheduleFiring
from itsm.schedules.validation import Definition
from itsm.tickets.models import Ticket
from tests import factories, jobtasks
from tests.processes import wait_for
from tests.reliability.conftest import FINAL, job_runs, queues_idle, scalar

GRACE = "2"  # JOBS_LOST_GRACE_SECONDS for the workers here (30 by default)
MESSAGE_ID = re.compile(r"<itsm-outbox-(\d+)[.@]")


def executions(app, key: str) -> Counter:
    """How many times each ``"<key> <mark>"`` was recorded by the test tasks."""
    with app.app_context():
        titles = db.session.scalars(sa.select(Ticket.title).where(Ticket.title.like(f"{key} %"))).all()
    return Counter(title.removeprefix(f"{key} ") for title in titles)


def settled(app, task_name: str, count: int):
    rows = job_runs(app, task_name=task_name)
    return rows if len(rows) == count and all(r.status in FINAL for r in rows) else None


def quiet(redis) -> None:
    """Proving that nothing runs twice takes time: the queues empty, then several recovery passes
    (every second here) that must find nothing to do."""
    wait_for(lambda: queues_idle(redis), timeout=60, message="the queues to empty")
    time.sleep(4)


def test_queued_jobs_lost_with_redis_run_exactly_once(app, procs, redis):
    """Fault: 100 jobs of ``t.record`` (late acknowledgement; it records each execution in the database)
    and one of ``t.record_early_ack`` (no late acknowledgement) are queued, and FLUSHDB empties Redis
    before any worker has taken them. Then the workers start.

    Must survive: every job. The 100 run exactly once each (0 lost, 0 duplicated), their audit rows say
    succeeded and re-enqueued; the other, which may not run twice, is marked lost with the reason and
    never runs. Nothing runs again however many recovery passes follow."""
    with app.app_context():
        ids = jobtasks.record.apply_many([(("lost", n), {}) for n in range(100)])
        early = jobtasks.record_early_ack.delay("early", 1)
    assert redis.llen("rq:queue:default") == 101
    redis.flushdb()
    procs.worker("--concurrency", "2", JOBS_LOST_GRACE_SECONDS=GRACE)

    rows = wait_for(lambda: settled(app, "t.record", 100), timeout=120, interval=0.2,
                    message="the 100 lost jobs to run")
    [lost] = wait_for(lambda: settled(app, "t.record_early_ack", 1), timeout=30, message="the early-ack job's row")
    quiet(redis)
    assert executions(app, "lost") == Counter({str(n): 1 for n in range(100)})
    rows = job_runs(app, task_name="t.record")
    assert sorted(r.job_id for r in rows) == sorted(ids)
    assert {(r.attempt, r.status) for r in rows} == {(1, "succeeded")}
    assert all(r.requeued_at is not None for r in rows)
    assert (lost.job_id, lost.status, lost.error_type) == (early.id, "lost", "JobLost")
    assert "acks_late" in lost.error_message and "Redis" in lost.error_message
    assert executions(app, "early") == Counter()


def test_a_countdown_job_lost_with_redis_runs_at_its_time(app, procs, redis):
    """Fault: a job enqueued with a 6 s countdown, then FLUSHDB while it waits (workers running).

    Must survive: the job, and its time. It is enqueued again for its time, runs once, not early."""
    procs.worker(JOBS_LOST_GRACE_SECONDS=GRACE)
    with app.app_context():
        handle = jobtasks.record.apply_async(("later", 1), countdown=6)
    wait_for(lambda: job_runs(app, handle.id), timeout=10, message="the queued row")
    redis.flushdb()
    [run] = wait_for(lambda: settled(app, "t.record", 1), timeout=30, message="the countdown job to run")
    assert run.status == "succeeded" and run.requeued_at is not None
    assert run.requeued_at < run.scheduled_for == handle.scheduled_for  # recovered before its time
    assert handle.scheduled_for <= run.started_at < handle.scheduled_for + timedelta(seconds=3)
    quiet(redis)
    assert executions(app, "later") == Counter({"1": 1})


def test_a_periodic_retry_lost_with_redis_runs_once_and_the_tick_is_not_sent_again(app, procs, redis):
    """Fault: a one-off periodic firing of ``t.retry_once`` fails its first attempt and waits 6 s for its
    retry; FLUSHDB while it waits. The scheduler re-sends ticks that Redis lost before a worker claimed
    them, and this one was claimed, so only the audit knows about the retry.

    Must survive: the retry, once. It runs under the tick's job id and claim, the tick's firing ends
    succeeded, and the tick is not fired a second time."""
    with app.app_context():
        service.save(Definition(name="lost-retry", task="t.retry_once", kind="clocked", one_off=True,
                                clocked_time=datetime.now(UTC) + timedelta(seconds=1), args=["tick", 6]))
        db.session.commit()
    procs.start("scheduler")
    procs.worker(JOBS_LOST_GRACE_SECONDS=GRACE)
    [first] = wait_for(lambda: list(executions(app, "tick")), timeout=60, message="the first attempt")
    job_id = first.split(":")[0]
    wait_for(lambda: [r for r in job_runs(app, job_id) if r.attempt == 2], timeout=10, message="the queued retry")
    wait_for(lambda: redis.zscore("rq:scheduled:default", job_id), timeout=10, message="RQ to schedule the retry")
    redis.flushdb()
    wait_for(lambda: executions(app, "tick")[f"{job_id}:2"], timeout=30, message="the retry")
    quiet(redis)
    assert executions(app, "tick") == Counter({f"{job_id}:1": 1, f"{job_id}:2": 1})
    rows = job_runs(app, job_id)
    assert [(r.attempt, r.status) for r in rows] == [(1, "retrying"), (2, "succeeded")]
    assert rows[1].requeued_at is not None
    with app.app_context():
        [firing] = db.session.scalars(sa.select(ScheduleFiring)).all()
    assert (firing.job_id, firing.status, firing.attempt) == (job_id, "succeeded", 2)


def test_a_retry_whose_hash_redis_lost_before_rq_saved_it_keeps_its_attempt_count(app, procs, redis):
    """Fault: Redis loses a job's hash in the moment between its failed attempt's audit write and RQ
    saving the retry. RQ then writes the job back from the worker's memory, without the attempt counter
    kept beside RQ's own fields (here: those fields deleted once the retry is scheduled).

    Must survive: the count. The retry runs as attempt 2, once; it is not taken for a first attempt
    that would retry (and run) again."""
    procs.worker(JOBS_LOST_GRACE_SECONDS=GRACE)
    with app.app_context():
        job_id = jobtasks.retry_once.delay("window", 3).id
    wait_for(lambda: redis.zscore("rq:scheduled:default", job_id), timeout=30, message="RQ to schedule the retry")
    redis.hdel(f"rq:job:{job_id}", "itsm_attempt", "itsm_retry_base")
    wait_for(lambda: executions(app, "window")[f"{job_id}:2"], timeout=30, message="the retry")
    quiet(redis)
    assert executions(app, "window") == Counter({f"{job_id}:1": 1, f"{job_id}:2": 1})
    assert [(r.attempt, r.status) for r in job_runs(app, job_id)] == [(1, "retrying"), (2, "succeeded")]


@pytest.fixture
def app_config(mailserver):
    return mailserver.app_config()


def test_an_email_whose_send_job_redis_lost_is_sent_once_by_flush_and_recovery(app, procs, redis, mailserver):
    """Fault: 5 notifications are written (a ``send_email`` job each) and FLUSHDB empties Redis before a
    worker takes them. Both recoveries then act: ``flush_outbox`` queues new sends for the pending rows,
    and the audit's recovery pass re-enqueues the lost jobs under their own ids.

    Must survive: each email, once. It arrives exactly once; the second send of each finds it claimed
    and does nothing."""
    mailserver.start()
    with app.app_context():
        for n in range(5):
            factories.make_ticket(f"Mail {n}", requester_email=f"lost{n}@example.com")
        sends = [r.job_id for r in job_runs(app, task_name="send_email")]
        assert len(sends) == 5
        # Written a while ago, as flush_outbox expects of a row whose job never ran.
        ago = datetime.now(UTC) - timedelta(minutes=2)
        db.session.execute(sa.update(EmailMessage).values(created_at=ago, next_attempt_at=ago + timedelta(minutes=1)))
        db.session.commit()
    redis.flushdb()
    with app.app_context():
        flush_outbox.delay()
    procs.worker(JOBS_LOST_GRACE_SECONDS="4", **mailserver.env())
    wait_for(lambda: all(r.status in FINAL for r in job_runs(app, task_name="send_email"))
             and {r.job_id for r in job_runs(app, task_name="send_email")} >= set(sends)
             and all(r.requeued_at for r in job_runs(app, task_name="send_email") if r.job_id in sends),
             timeout=60, interval=0.2, message="the lost send jobs to run again")
    quiet(redis)
    with app.app_context():
        rows = db.session.scalars(sa.select(EmailMessage)).all()
    assert {r.status for r in rows} == {"sent"}
    received = Counter(int(MESSAGE_ID.match(m["Message-ID"]).group(1)) for m in mailserver.messages)
    assert received == Counter({r.id: 1 for r in rows})
    recovered = [r for r in job_runs(app, task_name="send_email") if r.job_id in sends]
    assert {r.status for r in recovered} == {"succeeded"}
    [flushed] = job_runs(app, task_name="send_emails")  # flush_outbox's own send of the five
    assert flushed.status == "succeeded"
    # Each row was sent by one of the two copies; the other found it claimed (sent: False / skipped).
    sent_by_recovered = sum(r.result["sent"] for r in recovered)
    assert sent_by_recovered + flushed.result["sent"] == 5
    assert flushed.result["skipped"] == sent_by_recovered
    assert scalar(app, sa.select(sa.func.count()).select_from(EmailMessage)) == 5
