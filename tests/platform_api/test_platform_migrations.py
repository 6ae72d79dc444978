"""Alembic up and down on both databases, and the migration matches the models exactly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from platform_fixtures import BACKENDS, fresh_database_url
from sqlalchemy import inspect

from platform_api import _migrate
from platform_api._db import Base, make_engine

EXPECTED_TABLES = {
    "users", "user_roles", "courses", "enrollments", "content_items", "content_versions", "transcode_jobs",
    "questions", "assessments", "assessment_questions", "submissions", "grades", "audit_log", "outbox_events",
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_downgrade_roundtrip(backend, tmp_path):
    for url in fresh_database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            _migrate.upgrade(engine)
            tables = set(inspect(engine).get_table_names())
            assert tables >= EXPECTED_TABLES
            with engine.connect() as connection:
                diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                        Base.metadata)
            assert diff == [], f"models and migrations disagree: {diff}"

            users = {c["name"]: c for c in inspect(engine).get_columns("users")}
            assert {"id", "email", "name", "role", "status", "metadata", "created_at", "updated_at",
                    "password_hash"} <= set(users)
            fks = inspect(engine).get_foreign_keys("user_roles")
            assert fks[0]["referred_table"] == "users" and fks[0]["options"].get("ondelete") == "CASCADE"
            uniques = inspect(engine).get_unique_constraints("enrollments")
            assert any(set(u["column_names"]) == {"user_id", "course_id"} for u in uniques)

            _migrate.downgrade(engine, "base")
            assert set(inspect(engine).get_table_names()) & EXPECTED_TABLES == set()
            _migrate.upgrade(engine)  # and up again from scratch
            assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
        finally:
            engine.dispose()
