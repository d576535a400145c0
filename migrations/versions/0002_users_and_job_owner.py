"""users and tokens: the user_account table and job.owner_id (issue 8)

Revision ID: 0002_users
Revises: 0001
Create Date: 2026-11-30 08:00:00
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002_users'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('user_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('name', name=op.f('uq_user_account_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_account_token_hash'))
    )
    # batch mode: SQLite adds a column with a foreign key by rebuilding the table
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_owner_id'), ['owner_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_job_owner_id_user_account'), 'user_account',
                                    ['owner_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_job_owner_id_user_account'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_job_owner_id'))
        batch_op.drop_column('owner_id')
    op.drop_table('user_account')
