"""Alembic up and down on both databases, and the migration matches the models exactly."""

from __future__ import annotations

import json
import uuid

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
            uniques = inspect(engine).get_unique_constraints("submissions")
            assert any(set(u["column_names"]) == {"assessment_id", "user_id", "attempt"} for u in uniques)

            _migrate.downgrade(engine, "base")
            assert set(inspect(engine).get_table_names()) & EXPECTED_TABLES == set()
            _migrate.upgrade(engine)  # and up again from scratch
            assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrades_that_rebuild_tables_keep_the_rows_that_reference_them(backend, tmp_path):
    """SQLite batch migrations copy a table, drop the old one and rename: with foreign keys on, that drop would
    cascade to every referencing row (0004 rebuilds `alerts`, losing `alert_outcomes`; 0006 rebuilds
    `content_items`, losing `content_versions`). Data written at head survives down to 0003 and back up."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from platform_api import _alerts
    from platform_api.api import (
        create_content_items,
        create_courses,
        create_users,
        enroll_users,
        record_alerts,
    )
    from platform_api.data import AlertOutcome, NewAlert, NewContent, NewCourse, NewEnrollment, NewUser

    counted = ("content_items", "content_versions", "alerts", "alert_outcomes")
    for url in fresh_database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            _migrate.upgrade(engine)
            with Session(engine) as session:
                (user,) = create_users(session=session, users=[NewUser(email="a@example.org", name="A")])
                (course,) = create_courses(session=session, courses=[NewCourse(title="C", instructor_id=user)])
                (enrollment,) = enroll_users(session=session, enrollments=[NewEnrollment(user_id=user,
                                                                                          course_id=course)])
                create_content_items(session=session, items=[NewContent(course_id=course, title="x", planned_week=2)])
                (alert,) = record_alerts(session=session, alerts=[NewAlert(
                    enrollment_id=enrollment, risk_score=0.9, threshold=0.7, model_name="risk", model_version="1")])
                _alerts.record_outcome(session=session, actor=None, alert_id=alert, outcome=AlertOutcome.dismissed,
                                       action=None, note="")

            def counts(engine=engine) -> dict[str, int]:
                with engine.connect() as connection:
                    return {t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in counted}

            assert counts() == dict.fromkeys(counted, 1)
            _migrate.downgrade(engine, "0003")
            assert counts() == dict.fromkeys(counted, 1)
            _migrate.upgrade(engine)
            assert counts() == dict.fromkeys(counted, 1)
            if backend == "sqlite":  # the pool's connections have foreign keys back on
                with engine.connect() as connection:
                    assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        finally:
            engine.dispose()


def test_imported_presentations_get_their_start_from_metadata(tmp_path):
    """0007 backfills starts_at from the metadata.start an earlier OULAD import recorded (a bad value is skipped)."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from platform_api.api import create_courses, create_users
    from platform_api.data import NewCourse, NewUser

    for url in fresh_database_url("sqlite", tmp_path):
        engine = make_engine(url)
        try:
            _migrate.upgrade(engine)
            with Session(engine) as session:
                (user,) = create_users(session=session, users=[NewUser(email="i@example.org", name="I")])
                create_courses(session=session, courses=[
                    NewCourse(title="imported", instructor_id=user, metadata={"start": "2014-10-01"}),
                    NewCourse(title="odd", instructor_id=user, metadata={"start": "autumn"})])
            _migrate.downgrade(engine, "0006")
            _migrate.upgrade(engine)
            with engine.connect() as connection:
                starts = dict(connection.execute(text("SELECT title, starts_at FROM courses")).all())
            assert str(starts["imported"]).startswith("2014-10-01 00:00:00") and starts["odd"] is None
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_role_grants_are_merged_and_then_impossible(backend, tmp_path):
    """0008: global grants (scope_id NULL) slipped past uq_user_roles_grant and course grants spelled as another
    UUID format never applied. The oldest of identical grants stays, course ids become canonical, and a new
    identical global grant is refused by the database."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from platform_api._models import UserRoleGrant
    from platform_api.api import create_courses, create_users
    from platform_api.data import NewCourse, NewUser

    grants = UserRoleGrant.__table__
    for url in fresh_database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            _migrate.upgrade(engine, "0007")
            with Session(engine) as session:
                user, other = create_users(session=session, users=[NewUser(email="g@example.org", name="G"),
                                                                   NewUser(email="h@example.org", name="H")])
                (course,) = create_courses(session=session, courses=[NewCourse(title="C", instructor_id=user)])
            start = datetime(2026, 1, 1, tzinfo=UTC)
            rows = [  # (user, role, scope type, scope id); created in this order
                (user, "operator", "global", None), (user, "operator", "global", None),
                (user, "operator", "global", None), (other, "operator", "global", None),
                (user, "teaching_assistant", "course", str(course).upper()),
                (user, "teaching_assistant", "course", str(course)),
                (user, "creator", "course", course.hex), (user, "instructor", "institution", "ou"),
            ]
            ids = [uuid.uuid4() for _ in rows]
            with engine.begin() as connection:
                connection.execute(insert(grants), [
                    {"id": grant_id, "user_id": who, "role_name": role, "scope_type": kind, "scope_id": scope,
                     "created_at": start + timedelta(minutes=i)}
                    for i, (grant_id, (who, role, kind, scope)) in enumerate(zip(ids, rows, strict=True))])

            _migrate.upgrade(engine)
            with engine.connect() as connection:
                left = {row.id: (row.user_id, row.role_name, row.scope_type, row.scope_id) for row in
                        connection.execute(select(grants.c.id, grants.c.user_id, grants.c.role_name,
                                                  grants.c.scope_type, grants.c.scope_id))}
            assert left == {
                ids[0]: (user, "operator", "global", None), ids[3]: (other, "operator", "global", None),
                ids[4]: (user, "teaching_assistant", "course", str(course)),
                ids[6]: (user, "creator", "course", str(course)), ids[7]: (user, "instructor", "institution", "ou")}
            with pytest.raises(IntegrityError), engine.begin() as connection:
                connection.execute(insert(grants).values(id=uuid.uuid4(), user_id=user, role_name="operator",
                                                         scope_type="global", scope_id=None, created_at=start))
            _migrate.downgrade(engine, "0007")  # and back: the index goes, the merged rows stay
            with engine.connect() as connection:
                assert len(connection.execute(select(grants.c.id)).all()) == 5
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_submissions_sharing_an_attempt_number_are_renumbered(backend, tmp_path):
    """0009 makes (assessment, learner, attempt) unique; rows that raced past the attempt count before it (or were
    imported as attempt 1 each) become attempts 1, 2, … in submission order, none is dropped."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert, text
    from sqlalchemy.orm import Session

    from platform_api._models import Submission
    from platform_api.api import create_assessments, create_courses, create_users
    from platform_api.data import NewAssessment, NewCourse, NewUser, SubmissionStatus

    for url in fresh_database_url(backend, tmp_path):
        engine = make_engine(url)
        try:
            _migrate.upgrade(engine)
            with Session(engine) as session:
                learner, other = create_users(session=session, users=[NewUser(email="l@example.org", name="L"),
                                                                      NewUser(email="o@example.org", name="O")])
                (course,) = create_courses(session=session, courses=[NewCourse(title="C", instructor_id=learner)])
                (task,) = create_assessments(session=session, assessments=[NewAssessment(course_id=course,
                                                                                         title="T")])
            _migrate.downgrade(engine, "0008")
            start = datetime(2026, 1, 1, tzinfo=UTC)
            rows = [(learner, 1, 3), (learner, 1, 1), (learner, 1, 2), (other, 1, 0), (other, 2, 5)]
            with engine.begin() as connection:
                connection.execute(insert(Submission.__table__), [
                    {"id": uuid.uuid4(), "assessment_id": task, "user_id": user, "course_id": course, "answers": {},
                     "status": SubmissionStatus.graded, "attempt": attempt, "metadata": {"order": minutes},
                     "submitted_at": start + timedelta(minutes=minutes), "updated_at": start}
                    for user, attempt, minutes in rows])
            _migrate.upgrade(engine)
            with engine.connect() as connection:
                found = connection.execute(text("SELECT user_id, attempt, metadata FROM submissions")).all()
            by_order = {json.loads(m)["order"] if isinstance(m, str) else m["order"]: a for _, a, m in found}
            assert by_order == {1: 1, 2: 2, 3: 3, 0: 1, 5: 2}
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_jobs_of_submissions_staff_graded_before_0011_are_closed(backend, tmp_path):
    """Before 0011 a staff grade left the essay's grading job pending for good (never claimed again, and read as an
    essay waiting by the operator page); the upgrade closes such jobs and leaves a queued essay's job pending."""
    from platform_fixtures import queued_essay
    from sqlalchemy import text, update
    from sqlalchemy.orm import Session

    from learnloop.settings import Settings
    from platform_api import _grading_review, api
    from platform_api._models import Submission
    from platform_api.data import NewSubmission, SubmissionStatus

    for url in fresh_database_url(backend, tmp_path):
        settings = Settings(data_dir=tmp_path / "var", database_url=url, env="test", nats_url=None, redis_url=None)
        settings.ensure_dirs()
        graded, question = queued_essay(settings)
        engine = make_engine(url)
        try:
            with Session(engine) as session:
                first = session.get(Submission, graded)
                (waiting,) = api.record_submissions(session=session, submissions=[NewSubmission(
                    assessment_id=first.assessment_id, user_id=first.user_id,
                    answers={str(question): "Another essay on the setting. " * 20})])
                _grading_review.enqueue_missing_jobs(session=session)
            _migrate.downgrade(engine, "0010")
            with engine.begin() as connection:  # what a staff grade did before 0011: the job untouched
                connection.execute(update(Submission.__table__).where(Submission.__table__.c.id == graded)
                                   .values(status=SubmissionStatus.graded))
            _migrate.upgrade(engine)
            with engine.connect() as connection:
                states = dict(connection.execute(text("SELECT submission_id, state FROM grading_jobs")).all())
            assert {uuid.UUID(str(k)): v for k, v in states.items()} == {graded: "staff_graded", waiting: "pending"}
        finally:
            engine.dispose()
