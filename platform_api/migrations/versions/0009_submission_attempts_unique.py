"""submissions: one row per (assessment, learner, attempt); concurrent submissions could exceed max_attempts

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows that already share an attempt number (concurrent submissions, imports that wrote attempt 1 each time)
    # are renumbered per learner and assessment in submission order; no submission is dropped.
    submissions = sa.table('submissions', sa.column('id', sa.Uuid()), sa.column('assessment_id', sa.Uuid()),
                           sa.column('user_id', sa.Uuid()), sa.column('attempt', sa.Integer()),
                           sa.column('submitted_at', sa.DateTime(timezone=True)))
    connection = op.get_bind()
    clashing = connection.execute(
        sa.select(submissions.c.assessment_id, submissions.c.user_id)
        .group_by(submissions.c.assessment_id, submissions.c.user_id, submissions.c.attempt)
        .having(sa.func.count() > 1)).all()
    for assessment_id, user_id in set(clashing):
        rows = connection.execute(
            sa.select(submissions.c.id).where(submissions.c.assessment_id == assessment_id,
                                              submissions.c.user_id == user_id)
            .order_by(submissions.c.submitted_at, submissions.c.attempt, submissions.c.id)).scalars().all()
        for attempt, row_id in enumerate(rows, start=1):
            connection.execute(submissions.update().where(submissions.c.id == row_id).values(attempt=attempt))
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_submissions_assessment_user_attempt',
                                          ['assessment_id', 'user_id', 'attempt'])


def downgrade() -> None:
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_submissions_assessment_user_attempt', type_='unique')
