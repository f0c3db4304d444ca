"""Fault: the worker is SIGKILLed while a job is inside its database transaction."""

from __future__ import annotations

import sqlalchemy as sa

from itsm.extensions import db
from itsm.tickets.models import Ticket
from tests import jobtasks
from tests.processes import wait_for
from tests.reliability.conftest import final_runs, tickets_titled

ROWS = 5


def test_a_job_whose_worker_is_killed_mid_transaction_completes_exactly_once(app, procs, redis):
    """Fault: ``kill -9`` of the whole worker (supervisor and child, like a machine dying) while a job
    holds 5 uncommitted ticket inserts.

    Must survive: the job (late acknowledgement). A second worker runs it again and it completes
    once: exactly 5 tickets and one successful commit; the killed attempt's rows never appear. The audit
    shows the killed attempt as lost (WorkerLost), then the retry as succeeded, under one job id.
    """
    first = procs.worker()
    with app.app_context():
        handle = jobtasks.gated_rows.delay("killed", ROWS)
    wait_for(lambda: redis.get("killed:inside"), timeout=60, message="the first attempt inside its transaction")
    assert redis.get("killed:inside").startswith(b"1:")
    procs.kill(first)  # SIGKILL to the process group: no cleanup, no rollback from the client side

    assert tickets_titled(app, "killed") == 0  # the killed transaction left nothing behind
    redis.set("killed:go", 1)
    procs.worker()

    rows = final_runs(app, handle.id, 2, timeout=90)
    assert [(r.attempt, r.status) for r in rows] == [(1, "lost"), (2, "succeeded")]
    assert rows[0].error_type == "WorkerLost"
    assert rows[1].result == ROWS
    assert redis.get("killed:inside").startswith(b"2:")  # the retry ran the whole body again
    assert int(redis.get("killed:committed")) == 1
    with app.app_context():
        titles = sorted(db.session.scalars(sa.select(Ticket.title).where(Ticket.title.like("killed %"))))
    assert titles == [f"killed {n}" for n in range(ROWS)]  # exactly once: no duplicates, none missing
