"""inbound mail: mailboxes, the ledger of every message, blocked senders; outgoing Message-IDs and bounces

Revision ID: 0017_inbound
Revises: 0016_attachments
Create Date: 2026-12-04 20:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0017_inbound'
down_revision = '0016_attachments'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('pending', 'sending', 'retrying', 'sent', 'failed')"
NEW_STATUSES = "status IN ('pending', 'sending', 'retrying', 'sent', 'failed', 'bounced')"
ACTED = "outcome IN ('ticket', 'comment', 'reopened')"


def upgrade():
    op.create_table(
        'mailboxes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('security', sa.String(length=10), nullable=False),
        sa.Column('username', sa.String(length=255), nullable=False),
        sa.Column('password_encrypted', sa.Text(), nullable=False),
        sa.Column('folder', sa.String(length=255), nullable=False),
        sa.Column('after_import', sa.String(length=10), nullable=False),
        sa.Column('move_to', sa.String(length=255), nullable=True),
        sa.Column('column_id', sa.Integer(), nullable=True),
        sa.Column('priority', sa.SmallInteger(), nullable=False),
        sa.Column('category', sa.String(length=80), nullable=False),
        sa.Column('assignee_id', sa.Integer(), nullable=True),
        sa.Column('on_closed_reply', sa.String(length=10), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
        sa.Column('last_uid', sa.BigInteger(), nullable=False),
        sa.Column('last_fetch_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_fetch_seconds', sa.Float(), nullable=True),
        sa.Column('last_fetch_count', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('failures_in_row', sa.Integer(), nullable=False),
        sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("security IN ('tls', 'starttls', 'plain')", name=op.f('ck_mailboxes_security')),
        sa.CheckConstraint("after_import IN ('seen', 'move')", name=op.f('ck_mailboxes_after_import')),
        sa.CheckConstraint("on_closed_reply IN ('reopen', 'new')", name=op.f('ck_mailboxes_on_closed_reply')),
        sa.CheckConstraint('priority BETWEEN 1 AND 4', name=op.f('ck_mailboxes_priority')),
        sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_mailboxes_assignee_id_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['column_id'], ['board_columns.id'],
                                name=op.f('fk_mailboxes_column_id_board_columns'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_mailboxes')),
        sa.UniqueConstraint('name', name=op.f('uq_mailboxes_name')),
    )
    op.create_table(
        'inbound_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('mailbox_id', sa.Integer(), nullable=True),
        sa.Column('message_id', sa.String(length=255), nullable=False),
        sa.Column('uidvalidity', sa.BigInteger(), nullable=True),
        sa.Column('uid', sa.BigInteger(), nullable=True),
        sa.Column('sender', sa.String(length=254), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.Column('comment_id', sa.Integer(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('done_on_server_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('raw_sha256', sa.String(length=64), nullable=True),
        sa.CheckConstraint("outcome IN ('ticket', 'comment', 'reopened', 'ignored', 'error', 'failed')",
                           name=op.f('ck_inbound_messages_outcome')),
        sa.ForeignKeyConstraint(['comment_id'], ['comments.id'], name=op.f('fk_inbound_messages_comment_id_comments'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_inbound_messages_mailbox_id_mailboxes'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_inbound_messages_ticket_id_tickets'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['raw_sha256'], ['attachment_blobs.sha256'],
                                name=op.f('fk_inbound_messages_raw_sha256_attachment_blobs')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
        sa.UniqueConstraint('mailbox_id', 'uidvalidity', 'uid', name='uq_inbound_messages_copy'),
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index('uq_inbound_messages_acted', ['message_id'], unique=True,
                              postgresql_where=sa.text(ACTED), sqlite_where=sa.text(ACTED))
        batch_op.create_index('ix_inbound_messages_mailbox_received', ['mailbox_id', 'received_at', 'id'])
        batch_op.create_index('ix_inbound_messages_received', ['received_at', 'id'])
        batch_op.create_index('ix_inbound_messages_message_id', ['message_id'])
        batch_op.create_index('ix_inbound_messages_sender_received', ['sender', 'received_at'])
        batch_op.create_index('ix_inbound_messages_raw_sha256', ['raw_sha256'])
    op.create_table(
        'inbound_blocked_senders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pattern', sa.String(length=254), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_blocked_senders')),
        sa.UniqueConstraint('pattern', name=op.f('uq_inbound_blocked_senders_pattern')),
    )
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('author_email', sa.String(length=254), nullable=True))
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_id', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_email_messages_message_id'), ['message_id'])
        batch_op.drop_constraint(batch_op.f('ck_email_messages_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_email_messages_status'), sa.text(NEW_STATUSES))


def downgrade():
    with op.batch_alter_table('email_messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_email_messages_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_email_messages_status'), sa.text(OLD_STATUSES))
        batch_op.drop_constraint(batch_op.f('uq_email_messages_message_id'), type_='unique')
        batch_op.drop_column('message_id')
    with op.batch_alter_table('comments', schema=None) as batch_op:
        batch_op.drop_column('author_email')
    op.drop_table('inbound_blocked_senders')
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_messages_raw_sha256')
        batch_op.drop_index('ix_inbound_messages_sender_received')
        batch_op.drop_index('ix_inbound_messages_message_id')
        batch_op.drop_index('ix_inbound_messages_received')
        batch_op.drop_index('ix_inbound_messages_mailbox_received')
        batch_op.drop_index('uq_inbound_messages_acted')
    op.drop_table('inbound_messages')
    op.drop_table('mailboxes')
