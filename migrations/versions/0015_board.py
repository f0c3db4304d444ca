"""board: an index for each column's cards, most urgent first, then oldest first

Revision ID: 0015_board
Revises: 0014_user_profile
Create Date: 2026-12-03 07:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0015_board'
down_revision = '0014_user_profile'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_column_archived_priority',
                              ['column_id', 'is_archived', 'priority', 'created_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_column_archived_priority')
