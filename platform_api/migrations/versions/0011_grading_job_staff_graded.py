"""grading jobs: a 'staff_graded' state (staff graded the submission by hand before the AI finished, so the
worker's late result is dropped instead of retried or turned into "needs manual grading")

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_OLD = ('pending', 'suggested', 'needs_manual_grading')
_NEW = (*_OLD, 'staff_graded')


def _state(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name='grading_job_state', native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    # The state is VARCHAR + CHECK: batch mode recreates the table on SQLite and swaps the CHECK on PostgreSQL.
    with op.batch_alter_table('grading_jobs', schema=None) as batch_op:
        batch_op.alter_column('state', existing_type=_state(_OLD), type_=_state(_NEW), existing_nullable=False)
    # Before this revision a staff grade left the job pending for good (never claimed again: its submission is not
    # queued); close those, or the operator page reads them as essays waiting.
    op.execute("UPDATE grading_jobs SET state = 'staff_graded', claim_token = NULL, leased_until = NULL "
               "WHERE state = 'pending' AND submission_id IN (SELECT id FROM submissions WHERE status = 'graded')")


def downgrade() -> None:
    # The old code has no closed-by-staff state; the submission is graded, so no queue or worker reads the job.
    op.execute("UPDATE grading_jobs SET state = 'needs_manual_grading' WHERE state = 'staff_graded'")
    with op.batch_alter_table('grading_jobs', schema=None) as batch_op:
        batch_op.alter_column('state', existing_type=_state(_NEW), type_=_state(_OLD), existing_nullable=False)
