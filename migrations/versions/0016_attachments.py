"""attachments: files on tickets and comments, content-addressed blobs in 1 MiB chunks

Revision ID: 0016_attachments
Revises: 0015_board
Create Date: 2026-12-04 19:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0016_attachments'
down_revision = '0015_board'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'attachment_blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('chunk_size', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('size > 0', name=op.f('ck_attachment_blobs_size')),
        sa.CheckConstraint('chunk_size > 0', name=op.f('ck_attachment_blobs_chunk_size')),
        sa.PrimaryKeyConstraint('sha256', name=op.f('pk_attachment_blobs')),
    )
    op.create_table(
        'attachment_chunks',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['sha256'], ['attachment_blobs.sha256'],
                                name=op.f('fk_attachment_chunks_sha256_attachment_blobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('sha256', 'seq', name=op.f('pk_attachment_chunks')),
    )
    op.create_table(
        'attachments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=False),
        sa.Column('comment_id', sa.Integer(), nullable=True),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('thumbnail_sha256', sa.String(length=64), nullable=True),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('content_type', sa.String(length=127), nullable=False),
        sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('from_template', sa.Boolean(), nullable=False),
        sa.CheckConstraint('size > 0', name=op.f('ck_attachments_size')),
        sa.ForeignKeyConstraint(['comment_id'], ['comments.id'], name=op.f('fk_attachments_comment_id_comments'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['sha256'], ['attachment_blobs.sha256'],
                                name=op.f('fk_attachments_sha256_attachment_blobs')),
        sa.ForeignKeyConstraint(['thumbnail_sha256'], ['attachment_blobs.sha256'],
                                name=op.f('fk_attachments_thumbnail_sha256_attachment_blobs')),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_attachments_ticket_id_tickets'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'],
                                name=op.f('fk_attachments_uploaded_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index('ix_attachments_ticket_created', ['ticket_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_attachments_sha256', ['sha256'], unique=False)
        batch_op.create_index('ix_attachments_thumbnail_sha256', ['thumbnail_sha256'], unique=False)


def downgrade():
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_attachments_thumbnail_sha256')
        batch_op.drop_index('ix_attachments_sha256')
        batch_op.drop_index('ix_attachments_ticket_created')
    op.drop_table('attachments')
    op.drop_table('attachment_chunks')
    op.drop_table('attachment_blobs')
