"""user_roles: identical grants become impossible — course scope ids canonical, duplicates removed, and a unique
index for global grants (scope_id NULL), which uq_user_roles_grant never caught because NULLs are distinct

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 09:30:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _canonical(scope_type: str, scope_id: str | None) -> str | None:
    # A course grant spelled as upper-case or dash-less UUID never applied; written canonically it does.
    if scope_type != 'course' or scope_id is None:
        return scope_id
    try:
        return str(uuid.UUID(scope_id))
    except ValueError:
        return scope_id


def upgrade() -> None:
    grants = sa.table('user_roles', sa.column('id', sa.Uuid()), sa.column('user_id', sa.Uuid()),
                      sa.column('role_name', sa.String()), sa.column('scope_type', sa.String()),
                      sa.column('scope_id', sa.String()), sa.column('created_at', sa.DateTime(timezone=True)))
    connection = op.get_bind()
    rows = connection.execute(sa.select(grants.c.id, grants.c.user_id, grants.c.role_name, grants.c.scope_type,
                                        grants.c.scope_id).order_by(grants.c.created_at, grants.c.id)).all()
    kept: dict[tuple, object] = {}
    duplicates, respelled = [], []
    for grant_id, user_id, role_name, scope_type, scope_id in rows:
        canonical = _canonical(scope_type, scope_id)
        key = (user_id, role_name, scope_type, canonical)
        if key in kept:
            duplicates.append(grant_id)  # the oldest identical grant stays
            continue
        kept[key] = grant_id
        if canonical != scope_id:
            respelled.append((grant_id, canonical))
    # Deletes first: a respelled id may equal a duplicate's and uq_user_roles_grant must hold at every step.
    for grant_id in duplicates:
        connection.execute(grants.delete().where(grants.c.id == grant_id))
    for grant_id, canonical in respelled:
        connection.execute(grants.update().where(grants.c.id == grant_id).values(scope_id=canonical))
    op.create_index('uq_user_roles_unscoped_grant', 'user_roles', ['user_id', 'role_name', 'scope_type'],
                    unique=True, sqlite_where=sa.text('scope_id IS NULL'),
                    postgresql_where=sa.text('scope_id IS NULL'))


def downgrade() -> None:
    # Removed duplicates and respelled ids are not restored: they granted nothing the kept rows do not.
    op.drop_index('uq_user_roles_unscoped_grant', table_name='user_roles')
