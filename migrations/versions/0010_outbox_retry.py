"""outbox retries: next attempt, deferrals, delivery start

Revision ID: 0010_outbox_retry
Revises: 0009_schedule_invalid
Create Date: 2026-11-22 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_outbox_retry'
down_revision = '0009_schedule_invalid'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deferrals', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('delivery_started_at', sa.DateTime(timezone=True), nullable=True))
    # Rows already waiting are due at the next flush (the claim keeps a queued job from sending twice);
    # every row's deadline counts from when it was written.
    op.execute("UPDATE email_messages SET delivery_started_at = created_at")
    op.execute("UPDATE email_messages SET next_attempt_at = created_at WHERE status IN ('pending', 'retrying')")
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.alter_column('deferrals', server_default=None)
        batch_op.alter_column('delivery_started_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index('ix_email_messages_due', ['status', 'next_attempt_at'], unique=False)


def downgrade():
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_email_messages_due')
        batch_op.drop_column('delivery_started_at')
        batch_op.drop_column('deferrals')
        batch_op.drop_column('next_attempt_at')
