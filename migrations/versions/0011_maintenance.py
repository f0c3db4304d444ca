"""maintenance mode flag

Revision ID: 0011_maintenance
Revises: 0010_outbox_retry
Create Date: 2026-12-02 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_maintenance'
down_revision = '0010_outbox_retry'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('maintenance_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_by', sa.String(length=200), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=True),
    sa.Column('retry_after', sa.Integer(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_maintenance_state_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_maintenance_state'))
    )


def downgrade():
    op.drop_table('maintenance_state')
