"""job phase: a phase after the frames (a two-stage job's series solve) and its progress (issue 12)

Revision ID: 0003_job_phase
Revises: 0002_users
Create Date: 2026-11-30 08:40:00
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0003_job_phase'
down_revision: Union[str, None] = '0002_users'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # existing rows: no phase, no windows (server defaults fill them, as the models' defaults do)
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phase', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('phase_done', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('phase_total', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('phase_sent_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('phase_sent_at')
        batch_op.drop_column('phase_total')
        batch_op.drop_column('phase_done')
        batch_op.drop_column('phase')
