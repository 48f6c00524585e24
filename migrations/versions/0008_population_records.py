"""population records: one sealed record per job and dataset version, numbered per version

A record written from now on seals all of a job's rows on one version together (``row_index`` NULL);
a record written before holds one row (``row_index`` set) and is read as before. Released records are
numbered per version (``seq``, 1, 2, ... in the order they were stored, unique per version): a
process's cache of the history names the last record it holds, so a release checks one index entry
instead of reading every record's id. Existing released rows are numbered in the order they were
stored; nothing is decrypted (the keys are the runtime's).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_populations = sa.table(
    'cell_populations',
    sa.column('id', sa.String),
    sa.column('dataset_version_id', sa.String),
    sa.column('released', sa.Boolean),
    sa.column('created_at', sa.DateTime),
    sa.column('seq', sa.Integer),
)


def upgrade() -> None:
    with op.batch_alter_table('cell_populations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.alter_column('row_index', existing_type=sa.Integer(), nullable=True)
    connection = op.get_bind()
    released = connection.execute(
        sa.select(_populations.c.id, _populations.c.dataset_version_id)
        .where(_populations.c.released.is_(True))
        .order_by(_populations.c.dataset_version_id, _populations.c.created_at, _populations.c.id)
    ).all()
    numbered: dict[str, int] = {}
    for row_id, version_id in released:
        numbered[version_id] = numbered.get(version_id, 0) + 1
        connection.execute(sa.update(_populations).where(_populations.c.id == row_id).values(seq=numbered[version_id]))
    with op.batch_alter_table('cell_populations', schema=None) as batch_op:
        batch_op.create_index('ix_cell_populations_version_seq', ['dataset_version_id', 'seq'], unique=True)


def downgrade() -> None:
    # A record of several rows cannot be split without the keys: downgrading with such records fails here.
    connection = op.get_bind()
    bundled = connection.execute(sa.text('SELECT COUNT(*) FROM cell_populations WHERE row_index IS NULL')).scalar_one()
    if bundled:
        raise RuntimeError(f'{bundled} population records hold several rows; revision 0007 cannot read them')
    with op.batch_alter_table('cell_populations', schema=None) as batch_op:
        batch_op.drop_index('ix_cell_populations_version_seq')
        batch_op.alter_column('row_index', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('seq')
