"""The pass that finds queued jobs Redis lost (jobs.recovery), against real Redis, on both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job

from itsm.dbtypes import utcnow
from itsm.extensions import db
from jobs import recovery, runtime
from jobs.models import JobRun
from tests import jobtasks

runs = JobRun.__table__


def row(job_id: str, *, created, task_name: str = "t.record", attempt: int = 1, payload=None, retries=0,
        scheduled_for=None, status: str = "queued") -> dict:
    return {"job_id": job_id, "attempt": attempt, "task_name": task_name, "queue": "default", "args_summary": "",
            "status": status, "created_at": created, "enqueued_at": created, "scheduled_for": scheduled_for,
            "payload": {"args": ["k", 1], "kwargs": {}} if payload is None else payload, "retries": retries}


def statuses() -> dict[str, tuple]:
    db.session.expire_all()
    return {r.job_id: (r.status, r.requeued_at is not None) for r in db.session.scalars(sa.select(JobRun))}


def test_only_old_queued_rows_whose_job_is_gone_are_recovered(app, redis):
    now = utcnow()
    old = now - timedelta(minutes=5)
    with app.app_context():
        present = jobtasks.record.delay("k", 1).id  # in Redis: left alone however old its row
        db.session.execute(sa.update(JobRun).where(JobRun.job_id == present).values(created_at=old))
        db.session.execute(sa.insert(JobRun), [
            row("gone", created=old),
            row("young", created=now - timedelta(seconds=5)),  # being enqueued right now, perhaps
            row("done", created=old, status="succeeded"),
            row("early", created=old, task_name="t.record_early_ack"),
            row("bare", created=old, payload={}) | {"payload": None},
            row("unknown", created=old, task_name="t.no_such_task"),
            row("retry", created=old, attempt=3, retries=2, scheduled_for=now + timedelta(minutes=1)),
        ])
        db.session.commit()
        found = recovery.recover_lost(redis, now=now, grace=30, settle=0)
        assert (found.requeued, found.lost) == (2, 3)
        got = statuses()
        assert got[present] == ("queued", False) and got["young"] == ("queued", False)
        assert got["done"] == ("succeeded", False)
        assert got["gone"] == ("queued", True) and got["retry"] == ("queued", True)
        assert {got[j][0] for j in ("early", "bare", "unknown")} == {"lost"}
        reasons = dict(db.session.execute(sa.select(JobRun.job_id, JobRun.error_message)
                                          .where(JobRun.status == "lost")).all())
        assert "acks_late=False" in reasons["early"] and "no arguments" in reasons["bare"]
        assert "unknown" in reasons["unknown"]

    gone = Job.fetch("gone", connection=redis)
    assert gone.get_status() == "queued" and tuple(gone.args) == ("t.record", ["k", 1], {})
    assert redis.lrange("rq:queue:default", 0, -1).count(b"gone") == 1
    retry = Job.fetch("retry", connection=redis)
    assert retry.get_status() == "scheduled"
    # The third attempt, with two retries behind it: the counts go on where they were.
    assert redis.hmget(retry.key, runtime.ATTEMPT_FIELD, runtime.RETRY_BASE_FIELD) == [b"2", b"0"]
    [(member, score)] = redis.zrange("rq:scheduled:default", 0, -1, withscores=True)
    assert member == b"retry" and score >= (now + timedelta(minutes=1)).timestamp()

    with app.app_context():  # a second pass finds them in Redis again: nothing more
        assert recovery.recover_lost(redis, now=now, grace=30, settle=0) == recovery.Recovered()
    assert redis.lrange("rq:queue:default", 0, -1).count(b"gone") == 1


def test_two_passes_at_once_enqueue_a_lost_job_once(app, redis):
    """The claim on the row: a second pass that read the same candidates (a lapsed lock) enqueues nothing."""
    old = utcnow() - timedelta(minutes=5)
    with app.app_context():
        db.session.execute(sa.insert(JobRun), [row("twice", created=old)])
        db.session.commit()
        [candidate] = recovery._missing(redis, old + timedelta(seconds=1))
        assert recovery._recover(redis, candidate, utcnow(), old + timedelta(seconds=1)) == "requeued"
        assert recovery._recover(redis, candidate, utcnow(), old + timedelta(seconds=1)) is None
    assert redis.lrange("rq:queue:default", 0, -1) == [b"twice"]


def test_the_pass_reads_a_bounded_range_of_the_status_index(app, redis):
    """With many finished runs and a few queued ones, the candidates come from a range of an index of the
    queued rows, not a scan of the table or of an index of every row."""
    old = utcnow() - timedelta(days=1)
    with app.app_context():
        db.session.execute(sa.insert(JobRun), [row(f"f{n}", created=old, status="succeeded") for n in range(20_000)]
                           + [row(f"q{n}", created=old) for n in range(3)])
        db.session.commit()
        query = (sa.select(*recovery.COLUMNS).where(runs.c.status == "queued", runs.c.created_at < utcnow(),
                                                    sa.tuple_(runs.c.created_at, runs.c.id) > sa.tuple_(old, 0))
                 .order_by(runs.c.created_at, runs.c.id).limit(recovery.BATCH))
        sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
        if db.engine.dialect.name == "postgresql":
            db.session.execute(sa.text("ANALYZE job_runs"))
            plan = "\n".join(db.session.scalars(sa.text(f"EXPLAIN {sql}")))
        else:
            plan = "\n".join(str(r[-1]) for r in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))
        db.session.rollback()
        # The partial index, or the one led by status (SQLite's choice): a range of queued rows either way.
        assert "ix_job_runs_queued" in plan or "ix_job_runs_status_created (status=?" in plan, plan
        assert "Seq Scan" not in plan and "Filter: ((status" not in plan and not plan.startswith("SCAN"), plan
        assert recovery.recover_lost(redis, grace=30, settle=0).requeued == 3


@pytest.mark.parametrize("batch", [2])
def test_the_cursor_carries_a_pass_on_where_the_last_one_stopped(app, redis, monkeypatch, batch):
    monkeypatch.setattr(recovery, "BATCH", batch)
    monkeypatch.setattr(recovery, "MAX_ROWS", batch)
    old = utcnow() - timedelta(minutes=5)
    with app.app_context():
        db.session.execute(sa.insert(JobRun), [row(f"c{n}", created=old + timedelta(seconds=n)) for n in range(5)])
        db.session.commit()
        passes = [recovery.recover_lost(redis, grace=30, settle=0).requeued for _ in range(4)]
    assert passes == [2, 2, 1, 0]  # two, two, the last one (then back to the start: all in Redis now)
    assert sorted(redis.lrange("rq:queue:default", 0, -1)) == [f"c{n}".encode() for n in range(5)]
