"""released cells for differencing checks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 00:07:48.884204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('released_cells',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_version_id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=36), nullable=False),
    sa.Column('row_index', sa.Integer(), nullable=False),
    sa.Column('key', sa.JSON(), nullable=False),
    sa.Column('units', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_released_cells_dataset_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_released_cells_job_id_jobs')),
    sa.ForeignKeyConstraint(['org_id'], ['orgs.id'], name=op.f('fk_released_cells_org_id_orgs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_released_cells'))
    )
    with op.batch_alter_table('released_cells', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_released_cells_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_released_cells_version_org_units', ['dataset_version_id', 'org_id', 'units'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('released_cells', schema=None) as batch_op:
        batch_op.drop_index('ix_released_cells_version_org_units')
        batch_op.drop_index(batch_op.f('ix_released_cells_job_id'))

    op.drop_table('released_cells')
