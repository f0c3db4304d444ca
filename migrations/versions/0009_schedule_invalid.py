"""schedules the scheduler cannot evaluate are marked invalid; intervals bounded at ten years

Revision ID: 0009_schedule_invalid
Revises: 0008_accounts
Create Date: 2026-12-02 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_schedule_invalid'
down_revision = '0008_accounts'
branch_labels = None
depends_on = None


def bound(prefix=''):
    """Ten years per period (3653 days), within the integer column for microseconds: see
    itsm/schedules/validation.py."""
    return (f"{prefix}every <= CASE {prefix}period WHEN 'days' THEN 3653 WHEN 'hours' THEN 87672 "
            f"WHEN 'minutes' THEN 5260320 WHEN 'seconds' THEN 315619200 WHEN 'microseconds' THEN 1000000000 END")


def known_period(prefix=''):
    return f"{prefix}period IN ('days', 'hours', 'minutes', 'seconds', 'microseconds')"


def out_of_bounds(prefix=''):
    return f"NOT ({known_period(prefix)}) OR NOT ({bound(prefix)})"


SQLITE_GUARDS = {
    'interval_schedules_bound_insert': 'INSERT',
    'interval_schedules_bound_update': 'UPDATE OF every, period',
}


def upgrade():
    # Plain ALTER TABLE on both databases: rebuilding periodic_tasks on SQLite would drop its triggers.
    op.add_column('periodic_tasks', sa.Column('invalid_reason', sa.String(length=300), nullable=True))
    op.add_column('periodic_tasks', sa.Column('invalid_since', sa.DateTime(timezone=True), nullable=True))

    # Rows the old form allowed (up to 1,000,000,000 days) would fail the new rule: their tasks are
    # disabled and marked, their intervals brought within the bound, so the upgrade never stops on them.
    op.execute(
        "UPDATE periodic_tasks SET enabled = false, invalid_since = CURRENT_TIMESTAMP, invalid_reason = "
        "'Its interval was longer than 10 years (or had no known period): the upgrade shortened it to the "
        "longest allowed and disabled the task. Edit it, then enable it.' "
        f"WHERE interval_id IN (SELECT id FROM interval_schedules WHERE {out_of_bounds()})")
    op.execute(f"UPDATE interval_schedules SET period = 'days' WHERE NOT ({known_period()})")
    op.execute("UPDATE interval_schedules SET every = CASE period WHEN 'days' THEN 3653 WHEN 'hours' THEN 87672 "
               "WHEN 'minutes' THEN 5260320 WHEN 'seconds' THEN 315619200 ELSE 1000000000 END "
               f"WHERE NOT ({bound()})")

    if op.get_bind().dialect.name == 'postgresql':
        op.create_check_constraint(op.f('ck_interval_schedules_every_bound'), 'interval_schedules', bound())
        op.create_check_constraint(op.f('ck_interval_schedules_period'), 'interval_schedules', known_period())
    else:
        # SQLite adds a CHECK only by rebuilding the table, which the foreign keys to it forbid: triggers
        # refuse the same rows, with a constraint error like a CHECK's.
        for name, event in SQLITE_GUARDS.items():
            op.execute(f"CREATE TRIGGER {name} BEFORE {event} ON interval_schedules WHEN {out_of_bounds('NEW.')} "
                       "BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: ck_interval_schedules_every_bound'); END")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(op.f('ck_interval_schedules_period'), 'interval_schedules', type_='check')
        op.drop_constraint(op.f('ck_interval_schedules_every_bound'), 'interval_schedules', type_='check')
        op.drop_column('periodic_tasks', 'invalid_since')
        op.drop_column('periodic_tasks', 'invalid_reason')
    else:
        for name in SQLITE_GUARDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("ALTER TABLE periodic_tasks DROP COLUMN invalid_since")  # SQLite 3.35+, no rebuild
        op.execute("ALTER TABLE periodic_tasks DROP COLUMN invalid_reason")
