"""periodic tasks

Revision ID: 0003_periodic_tasks
Revises: 0002_job_runs
Create Date: 2026-11-21 05:54:25.118263

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003_periodic_tasks'
down_revision = '0002_job_runs'
branch_labels = None
depends_on = None

DEFINITION_COLUMNS = (
    "name", "task", "interval_id", "crontab_id", "solar_id", "clocked_id", "args", "kwargs", "queue", "start_time",
    "expires", "expire_seconds", "one_off", "enabled", "misfire_policy", "catchup_window_seconds",
    "overlap_policy", "jitter_seconds",
)


def upgrade():
    op.create_table('clocked_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clocked_time', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clocked_schedules'))
    )
    op.create_table('crontab_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('minute', sa.String(length=240), nullable=False),
    sa.Column('hour', sa.String(length=96), nullable=False),
    sa.Column('day_of_week', sa.String(length=64), nullable=False),
    sa.Column('day_of_month', sa.String(length=124), nullable=False),
    sa.Column('month_of_year', sa.String(length=64), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crontab_schedules'))
    )
    op.create_table('interval_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('every', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=24), nullable=False),
    sa.CheckConstraint('every >= 1', name=op.f('ck_interval_schedules_every')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interval_schedules'))
    )
    op.create_table('schedule_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_state'))
    )
    op.create_table('solar_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=24), nullable=False),
    sa.Column('latitude', sa.Numeric(precision=9, scale=6), nullable=False),
    sa.Column('longitude', sa.Numeric(precision=9, scale=6), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_solar_schedules'))
    )
    op.create_table('periodic_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('task', sa.String(length=200), nullable=False),
    sa.Column('interval_id', sa.Integer(), nullable=True),
    sa.Column('crontab_id', sa.Integer(), nullable=True),
    sa.Column('solar_id', sa.Integer(), nullable=True),
    sa.Column('clocked_id', sa.Integer(), nullable=True),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('kwargs', sa.JSON(), nullable=False),
    sa.Column('queue', sa.String(length=40), nullable=True),
    sa.Column('start_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expire_seconds', sa.Integer(), nullable=True),
    sa.Column('one_off', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('misfire_policy', sa.String(length=8), nullable=False),
    sa.Column('catchup_window_seconds', sa.Integer(), nullable=False),
    sa.Column('overlap_policy', sa.String(length=8), nullable=False),
    sa.Column('jitter_seconds', sa.Integer(), nullable=False),
    sa.Column('default_definition', sa.JSON(), nullable=True),
    sa.Column('overridden', sa.Boolean(), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('total_run_count', sa.Integer(), nullable=False),
    sa.Column('date_changed', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_tick_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_tick_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scheduled_hash', sa.String(length=64), nullable=True),
    sa.CheckConstraint("misfire_policy IN ('skip', 'once', 'all')", name=op.f('ck_periodic_tasks_misfire')),
    sa.CheckConstraint("overlap_policy IN ('skip', 'allow')", name=op.f('ck_periodic_tasks_overlap')),
    sa.CheckConstraint("source IN ('registry', 'admin')", name=op.f('ck_periodic_tasks_source')),
    sa.CheckConstraint('(CASE WHEN interval_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN crontab_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN solar_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN clocked_id IS NULL THEN 0 ELSE 1 END) = 1', name=op.f('ck_periodic_tasks_one_schedule')),
    sa.CheckConstraint('expires IS NULL OR expire_seconds IS NULL', name=op.f('ck_periodic_tasks_one_expiry')),
    sa.ForeignKeyConstraint(['clocked_id'], ['clocked_schedules.id'], name=op.f('fk_periodic_tasks_clocked_id_clocked_schedules')),
    sa.ForeignKeyConstraint(['crontab_id'], ['crontab_schedules.id'], name=op.f('fk_periodic_tasks_crontab_id_crontab_schedules')),
    sa.ForeignKeyConstraint(['interval_id'], ['interval_schedules.id'], name=op.f('fk_periodic_tasks_interval_id_interval_schedules')),
    sa.ForeignKeyConstraint(['solar_id'], ['solar_schedules.id'], name=op.f('fk_periodic_tasks_solar_id_solar_schedules')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_periodic_tasks')),
    sa.UniqueConstraint('name', name=op.f('uq_periodic_tasks_name'))
    )
    op.create_table('schedule_firings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('periodic_task_id', sa.Integer(), nullable=False),
    sa.Column('tick_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.CheckConstraint("status IN ('running', 'retrying', 'succeeded', 'failed', 'lost', 'skipped')", name=op.f('ck_schedule_firings_status')),
    sa.ForeignKeyConstraint(['periodic_task_id'], ['periodic_tasks.id'], name=op.f('fk_schedule_firings_periodic_task_id_periodic_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_firings')),
    sa.UniqueConstraint('periodic_task_id', 'tick_at', name='uq_schedule_firings_task_tick')
    )
    with op.batch_alter_table('schedule_firings', schema=None) as batch_op:
        batch_op.create_index('ix_schedule_firings_task_status', ['periodic_task_id', 'status'], unique=False)




    # Every change to a schedule's definition bumps schedule_state.version, whatever wrote it
    # (forms, CLI, sync, bulk SQL), so the scheduler notices within seconds. Run bookkeeping
    # columns (last_run_at, total_run_count, next_tick_at ...) are left out on purpose.
    op.execute("INSERT INTO schedule_state (id, version) VALUES (1, 0)")
    watched = {
        "periodic_tasks": DEFINITION_COLUMNS,
        "interval_schedules": ("every", "period"),
        "crontab_schedules": ("minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone"),
        "solar_schedules": ("event", "latitude", "longitude"),
        "clocked_schedules": ("clocked_time",),
    }
    bump = "UPDATE schedule_state SET version = version + 1 WHERE id = 1"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE FUNCTION bump_schedule_version() RETURNS trigger AS $$ BEGIN {bump}; RETURN NULL; END; "
                   "$$ LANGUAGE plpgsql")
        for table, columns in watched.items():
            op.execute(f"CREATE TRIGGER {table}_changed AFTER INSERT OR DELETE OR UPDATE OF {', '.join(columns)} "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_schedule_version()")
    else:
        for table, columns in watched.items():
            for event in ("INSERT", "DELETE", f"UPDATE OF {', '.join(columns)}"):
                name = f"{table}_{event.split()[0].lower()}_changed"
                op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {bump}; END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in ("periodic_tasks", "interval_schedules", "crontab_schedules", "solar_schedules",
                      "clocked_schedules"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
        op.execute("DROP FUNCTION IF EXISTS bump_schedule_version()")

    with op.batch_alter_table('schedule_firings', schema=None) as batch_op:
        batch_op.drop_index('ix_schedule_firings_task_status')

    op.drop_table('schedule_firings')
    op.drop_table('periodic_tasks')
    op.drop_table('solar_schedules')
    op.drop_table('schedule_state')
    op.drop_table('interval_schedules')
    op.drop_table('crontab_schedules')
    op.drop_table('clocked_schedules')
