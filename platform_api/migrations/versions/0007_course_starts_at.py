"""courses: starts_at, when week 1 begins (content planned weeks and recommendations count from it)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 10:45:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('courses', sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True))
    # Presentations imported earlier kept their first day in metadata.start (an ISO date): it becomes starts_at.
    courses = sa.table('courses', sa.column('id', sa.Uuid()), sa.column('metadata', sa.JSON()),
                       sa.column('starts_at', sa.DateTime(timezone=True)))
    connection = op.get_bind()
    for course_id, metadata in connection.execute(sa.select(courses.c.id, courses.c.metadata)).all():
        start = (metadata or {}).get('start') if isinstance(metadata, dict) else None
        try:
            when = datetime.fromisoformat(str(start)) if start else None
        except ValueError:
            continue
        if when is not None:
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            connection.execute(courses.update().where(courses.c.id == course_id).values(starts_at=when))


def downgrade() -> None:
    with op.batch_alter_table('courses', schema=None) as batch_op:
        batch_op.drop_column('starts_at')
