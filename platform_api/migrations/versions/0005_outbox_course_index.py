"""outbox_events: an index on (course_id, event_type) — recommendations read a course's content opens per request

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 01:25:00
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outbox_course_event', 'outbox_events', ['course_id', 'event_type'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_outbox_course_event', table_name='outbox_events')
