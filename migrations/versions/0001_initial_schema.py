"""initial schema: jobs, frames, frame scalars, worker heartbeats

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 21:33:48.135366
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('spec', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('output_path', sa.Text(), nullable=False),
    sa.Column('frames_total', sa.Integer(), nullable=False),
    sa.Column('frames_done', sa.Integer(), nullable=False),
    sa.Column('frames_failed', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job'))
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_state'), ['state'], unique=False)

    op.create_table('worker_heartbeat',
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('queues', sa.String(length=255), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('hostname', 'pid', name=op.f('pk_worker_heartbeat'))
    )
    op.create_table('frame',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('source_t', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('task_id', sa.String(length=255), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_frame_job_id_job'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'index', name=op.f('pk_frame'))
    )
    with op.batch_alter_table('frame', schema=None) as batch_op:
        batch_op.create_index('ix_frame_job_id_state_index', ['job_id', 'state', 'index'], unique=False)

    op.create_table('frame_scalar',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id', 'index'], ['frame.job_id', 'frame.index'], name='fk_frame_scalar_frame', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'index', 'name', name=op.f('pk_frame_scalar'))
    )


def downgrade() -> None:
    op.drop_table('frame_scalar')
    with op.batch_alter_table('frame', schema=None) as batch_op:
        batch_op.drop_index('ix_frame_job_id_state_index')

    op.drop_table('frame')
    op.drop_table('worker_heartbeat')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_state'))

    op.drop_table('job')
