"""release audit: cell populations (sealed bitmaps) and audit findings replace released_cells

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cell_populations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('dataset_version_id', sa.String(length=36), nullable=False),
    sa.Column('row_index', sa.Integer(), nullable=False),
    sa.Column('released', sa.Boolean(), nullable=False),
    sa.Column('population', sa.LargeBinary(), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_cell_populations_dataset_version_id_dataset_versions')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_cell_populations_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cell_populations'))
    )
    with op.batch_alter_table('cell_populations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cell_populations_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_cell_populations_version_released', ['dataset_version_id', 'released'], unique=False)

    op.create_table('audit_findings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('row_index', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=20), nullable=False),
    sa.Column('earlier_job_id', sa.String(length=36), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_audit_findings_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_findings'))
    )
    with op.batch_alter_table('audit_findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_findings_job_id'), ['job_id'], unique=False)

    # Released cells recorded only sizes; their populations cannot be rebuilt here (the data is
    # encrypted and the unit secret is the runtime's), so earlier releases are not carried over.
    with op.batch_alter_table('released_cells', schema=None) as batch_op:
        batch_op.drop_index('ix_released_cells_version_org_units')
        batch_op.drop_index(batch_op.f('ix_released_cells_job_id'))
    op.drop_table('released_cells')


def downgrade() -> None:
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

    with op.batch_alter_table('audit_findings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_findings_job_id'))
    op.drop_table('audit_findings')
    with op.batch_alter_table('cell_populations', schema=None) as batch_op:
        batch_op.drop_index('ix_cell_populations_version_released')
        batch_op.drop_index(batch_op.f('ix_cell_populations_job_id'))
    op.drop_table('cell_populations')
