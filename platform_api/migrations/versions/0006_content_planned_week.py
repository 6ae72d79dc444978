"""content_items: planned_week, the course week an instructor plans an item for (read by the recommender)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a CHECK constraint in place (the table is recreated); PostgreSQL alters it.
    with op.batch_alter_table('content_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('planned_week', sa.Integer(), nullable=True))
        batch_op.create_check_constraint('ck_content_items_planned_week_positive',
                                         'planned_week IS NULL OR planned_week > 0')


def downgrade() -> None:
    with op.batch_alter_table('content_items', schema=None) as batch_op:
        batch_op.drop_constraint('ck_content_items_planned_week_positive', type_='check')
        batch_op.drop_column('planned_week')
