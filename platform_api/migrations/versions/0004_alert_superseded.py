"""alerts: a 'superseded' status (a re-alert after the cooldown closes the enrollment's older open alert)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 21:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_OLD = ('open', 'action_taken', 'dismissed', 'not_useful')
_NEW = (*_OLD, 'superseded')


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name='alert_status', native_enum=False, create_constraint=True, length=32)


def upgrade() -> None:
    # The status is VARCHAR + CHECK: batch mode recreates the table on SQLite and swaps the CHECK on PostgreSQL.
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=_status(_OLD), type_=_status(_NEW), existing_nullable=False)


def downgrade() -> None:
    op.execute("UPDATE alerts SET status = 'dismissed' WHERE status = 'superseded'")
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=_status(_NEW), type_=_status(_OLD), existing_nullable=False)
