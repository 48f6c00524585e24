"""privacy budget: spends and dataset epsilon caps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:52:36.722825
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('budget_spends',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('grant_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_id', sa.String(length=36), nullable=False),
    sa.Column('epsilon', sa.String(length=64), nullable=False),
    sa.Column('delta', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_budget_spends_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['grant_id'], ['grants.id'], name=op.f('fk_budget_spends_grant_id_grants')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_budget_spends_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_spends')),
    sa.UniqueConstraint('job_id', name=op.f('uq_budget_spends_job_id'))
    )
    with op.batch_alter_table('budget_spends', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_spends_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_budget_spends_grant_id'), ['grant_id'], unique=False)

    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('epsilon_cap', sa.String(length=64), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_column('epsilon_cap')

    with op.batch_alter_table('budget_spends', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budget_spends_grant_id'))
        batch_op.drop_index(batch_op.f('ix_budget_spends_dataset_id'))

    op.drop_table('budget_spends')
