"""Fault: a job fails for good in the middle of its database transaction."""

from __future__ import annotations

from tests import jobtasks
from tests.reliability.conftest import admins_told_of_failure, final_runs, tickets_titled

ROWS = 5


def test_a_job_that_crashes_before_its_commit_leaves_nothing_and_the_admins_hear_of_it(app, procs, redis):
    """Fault: a job with no retries left writes 5 tickets in its session (flushed, not committed) and
    then raises.

    Must survive: the database's consistency and the failure report. None of the 5 tickets is ever
    committed (the failure hooks that run afterwards must not commit them along with their own
    writes), the audit says failed with the error, and the admins get their "failed" email.
    """
    procs.worker()
    with app.app_context():
        handle = jobtasks.rows_then_crash.delay("crashed", ROWS)
    [run] = final_runs(app, handle.id, 1)
    assert run.status == "failed" and run.error_type == "RuntimeError"
    assert tickets_titled(app, "crashed") == 0
    assert admins_told_of_failure(app, "t.rows_then_crash", timeout=30) == "admin@example.com"
