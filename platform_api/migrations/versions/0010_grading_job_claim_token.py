"""grading jobs: a claim token per claim, so a worker whose lease ran out cannot overwrite the next claimant's work

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs leased before the upgrade have no token: their worker (old code) cannot renew them, so they are
    # claimable again when the lease they hold runs out, as before.
    with op.batch_alter_table('grading_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_token', sa.Uuid(), nullable=True))
        # Every renewal, refresh and result matches the job by its token: indexed, not a scan of the table.
        batch_op.create_index(batch_op.f('ix_grading_jobs_claim_token'), ['claim_token'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('grading_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_grading_jobs_claim_token'))
        batch_op.drop_column('claim_token')
