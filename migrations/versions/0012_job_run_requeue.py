"""job runs carry what re-enqueues them; an index of the queued ones

Revision ID: 0012_job_run_requeue
Revises: 0011_maintenance
Create Date: 2026-12-02 18:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_job_run_requeue'
down_revision = '0011_maintenance'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payload', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('retries', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('requeued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_job_runs_queued', ['created_at', 'id'], unique=False,
                              postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))


def downgrade():
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_job_runs_queued')
        batch_op.drop_column('requeued_at')
        batch_op.drop_column('retries')
        batch_op.drop_column('payload')
