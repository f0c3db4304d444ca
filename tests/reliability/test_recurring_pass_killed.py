"""Fault: PostgreSQL terminates the connection of a recurring-ticket pass after some of its batches committed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from itsm.extensions import db
from itsm.recurring.models import RecurringTicketRun
from itsm.tickets.models import Ticket
from tests.integration.test_recurring_processes import add_due_templates
from tests.processes import wait_for

BATCH, TEMPLATES, BLOCKED_BATCH = 50, 300, 3


@pytest.mark.postgres_only
def test_a_pass_killed_midway_records_the_batches_it_committed(pg_admin, app, procs, database_url):
    """Fault: ``flask tickets process-recurring --batch-size 50`` over 300 due templates; its third batch
    is held (the test keeps an uncommitted ticket for one of that batch's occurrences, so the pass's
    insert waits on it), and ``pg_terminate_backend`` ends the pass's connection while it waits.

    Must survive: the audit of the pass. Its row says *error* with the counts of the two batches it
    committed (100 due, 100 created), which are exactly the tickets in the database; nothing of the
    third batch is written."""
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    with app.app_context():
        add_due_templates(TEMPLATES, due)
        template_ids = db.session.scalars(sa.select(Ticket.id).where(Ticket.is_recurring.is_(True))
                                          .order_by(Ticket.id)).all()
        column_id = db.session.scalar(sa.text("SELECT min(id) FROM board_columns"))
    held = template_ids[(BLOCKED_BATCH - 1) * BATCH]  # the first template of the third batch (due order = id)
    database = database_url.rsplit("/", 1)[1]
    blocker = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with blocker.connect() as hold:
        hold.execute(sa.insert(Ticket).values(title="held", column_id=column_id, template_id=held, occurrence_at=due))
        pass_proc = procs.start("tickets", "process-recurring", "--batch-size", str(BATCH))
        waiting = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'")
        pid = wait_for(lambda: pg_admin.execute(waiting, {"db": database}).scalar(), timeout=60,
                       message="the pass to wait on the held occurrence")
        assert pg_admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
        assert pass_proc.wait(timeout=60) != 0
        hold.rollback()
    blocker.dispose()

    with app.app_context():
        committed = db.session.scalar(sa.select(sa.func.count(Ticket.id)).where(Ticket.template_id.is_not(None)))
        [run] = db.session.scalars(sa.select(RecurringTicketRun)).all()
    assert committed == (BLOCKED_BATCH - 1) * BATCH
    assert run.status == "error" and run.error_message and run.finished_at is not None
    assert (run.total_processed, run.total_created, run.total_skipped) == (committed, committed, 0)
