"""Fault: PostgreSQL terminates the worker's connection while a job is inside its transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests import jobtasks
from tests.processes import wait_for
from tests.reliability.conftest import admins_told_of_failure, final_runs, tickets_titled

ROWS = 5


@pytest.mark.postgres_only
def test_a_job_whose_connection_is_terminated_retries_and_writes_once(pg_admin, app, procs, redis):
    """Fault: ``SELECT pg_terminate_backend(pid)`` from a separate admin connection, on the backend of a
    job that has inserted 5 tickets and not committed yet (the backend is "idle in transaction").

    Must survive: the job and the worker. The commit fails with a connection error, the attempt is
    audited as retrying, the retry gets a fresh connection from the same worker process and commits:
    exactly 5 tickets, never a partial write (none are visible between the kill and the retry).
    """
    worker = procs.worker()
    with app.app_context():
        handle = jobtasks.gated_rows.delay("cut", ROWS)
    inside = wait_for(lambda: redis.get("cut:inside"), timeout=60, message="the first attempt inside its transaction")
    attempt, backend = (int(v) for v in inside.split(b":"))
    assert attempt == 1 and backend > 0
    state = pg_admin.execute(sa.text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": backend}).scalar()
    assert state == "idle in transaction"  # mid-transaction: the 5 inserts are written, not committed

    assert pg_admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar() is True
    wait_for(lambda: pg_admin.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                      {"pid": backend}).scalar() == 0, timeout=10, message="the backend to end")
    assert tickets_titled(app, "cut") == 0  # no partial write
    redis.delete("cut:inside")
    redis.set("cut:go", 1)  # the first attempt now tries to commit on its dead connection

    rows = final_runs(app, handle.id, 2, timeout=60)
    assert [(r.attempt, r.status) for r in rows] == [(1, "retrying"), (2, "succeeded")]
    assert rows[0].error_type == "OperationalError"
    assert rows[1].result == ROWS
    retry_attempt, retry_backend = (int(v) for v in redis.get("cut:inside").split(b":"))
    assert retry_attempt == 2 and retry_backend not in (0, backend)  # a fresh connection
    assert int(redis.get("cut:committed")) == 1
    assert tickets_titled(app, "cut") == ROWS
    assert rows[0].worker == rows[1].worker and worker.poll() is None  # the worker process lived on


@pytest.mark.postgres_only
def test_a_job_without_retries_whose_connection_is_terminated_fails_cleanly_and_is_reported(pg_admin, app, procs,
                                                                                          redis):
    """Fault: as above, ``pg_terminate_backend`` on the backend of a job inside its transaction, but the
    job has no retries (``max_retries=0``).

    Must survive: the database's consistency and the failure report. The job fails for good with the
    connection error and none of its rows is written; the failure hooks, which run in the same
    worker process right after, still work (a fresh connection), so the admins get their "failed"
    email; the worker goes on to run the next job.
    """
    with app.app_context():
        handle = jobtasks.gated_rows_no_retry.delay("lost", ROWS)
    procs.worker()
    inside = wait_for(lambda: redis.get("lost:inside"), timeout=60, message="the job inside its transaction")
    backend = int(inside.split(b":")[1])
    assert pg_admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar() is True
    redis.set("lost:go", 1)

    [run] = final_runs(app, handle.id, 1)
    assert run.status == "failed" and run.error_type == "OperationalError"
    assert tickets_titled(app, "lost") == 0
    assert admins_told_of_failure(app, "t.gated_rows_no_retry", timeout=10) == "admin@example.com"
    with app.app_context():
        after = jobtasks.add.delay(2, 2)
    assert final_runs(app, after.id, 1)[0].status == "succeeded"
