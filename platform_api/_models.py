"""The LMS schema as SQLAlchemy 2.0 models (the Alembic migrations in ``migrations/`` create exactly this)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from platform_api._db import Base
from platform_api.data import (
    AlertAction,
    AlertOutcome,
    AlertStatus,
    AssessmentKind,
    ContentKind,
    CourseStatus,
    CourseVisibility,
    EnrollmentStatus,
    EnrollmentType,
    GradedBy,
    QuestionKind,
    ScopeType,
    SubmissionStatus,
    TranscodeStatus,
    UserRole,
    UserStatus,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(enum_cls, name: str) -> SAEnum:
    # VARCHAR + CHECK on both SQLite and PostgreSQL: portable and migratable without ALTER TYPE.
    return SAEnum(enum_cls, name=name, native_enum=False, create_constraint=True, length=32,
                  values_callable=lambda members: [m.value for m in members], validate_strings=True)


class UTCTimestamp(TypeDecorator):
    """``TIMESTAMP WITH TIME ZONE`` that is UTC on both backends: values are stored in UTC, and SQLite, which keeps
    no offset, hands them back as aware UTC datetimes (as PostgreSQL does) instead of naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value  # naive: already UTC by this codebase's convention

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Timestamp = UTCTimestamp()


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(_enum(UserRole, "user_role"), default=UserRole.student)
    status: Mapped[UserStatus] = mapped_column(_enum(UserStatus, "user_status"), default=UserStatus.active)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class UserRoleGrant(Base):
    __tablename__ = "user_roles"
    __table_args__ = (
        UniqueConstraint("user_id", "role_name", "scope_type", "scope_id", name="uq_user_roles_grant"),
        # NULLs are distinct in a unique constraint, so global grants (no scope_id) need their own unique index.
        Index("uq_user_roles_unscoped_grant", "user_id", "role_name", "scope_type", unique=True,
              sqlite_where=text("scope_id IS NULL"), postgresql_where=text("scope_id IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_name: Mapped[str] = mapped_column(String(50))
    scope_type: Mapped[ScopeType] = mapped_column(_enum(ScopeType, "scope_type"), default=ScopeType.global_)
    scope_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (
        CheckConstraint("duration_weeks IS NULL OR duration_weeks > 0", name="ck_courses_duration_positive"),
        Index("ix_courses_status", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    instructor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                            nullable=True, index=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                         nullable=True)
    status: Mapped[CourseStatus] = mapped_column(_enum(CourseStatus, "course_status"), default=CourseStatus.draft)
    visibility: Mapped[CourseVisibility] = mapped_column(_enum(CourseVisibility, "course_visibility"),
                                                         default=CourseVisibility.public)
    enrollment_type: Mapped[EnrollmentType] = mapped_column(_enum(EnrollmentType, "enrollment_type"),
                                                            default=EnrollmentType.open)
    duration_weeks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When week 1 begins (the course plan's weeks count from here); None: from the course's creation.
    starts_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    credit_hours: Mapped[Decimal | None] = mapped_column(Numeric(3, 1), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("user_id", "course_id", name="uq_enrollments_user_course"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="ck_enrollments_progress_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    status: Mapped[EnrollmentStatus] = mapped_column(_enum(EnrollmentStatus, "enrollment_status"),
                                                     default=EnrollmentStatus.enrolled)
    started_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class ContentItem(Base):
    __tablename__ = "content_items"
    __table_args__ = (
        CheckConstraint("planned_week IS NULL OR planned_week > 0", name="ck_content_items_planned_week_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ContentKind] = mapped_column(_enum(ContentKind, "content_kind"))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    file_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The course week (1 = the first) the instructor plans the item for; the recommender reads it as the item's
    # planned week of use (OULAD ``week_from`` + 1). Not versioned: it is a plan, not the content.
    planned_week: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # captions_url, alt_text, transcript, language, ... (WCAG metadata travels with each version)
    accessibility: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                         nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class ContentVersion(Base):
    """Every saved version of a content item (the item row holds the latest)."""

    __tablename__ = "content_versions"
    __table_args__ = (UniqueConstraint("content_id", "version", name="uq_content_versions_content_version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    content_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("content_items.id", ondelete="CASCADE"),
                                                  index=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    file_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    accessibility: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                         nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class TranscodeJob(Base):
    __tablename__ = "transcode_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    content_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("content_items.id", ondelete="CASCADE"),
                                                  index=True)
    status: Mapped[TranscodeStatus] = mapped_column(_enum(TranscodeStatus, "transcode_status"),
                                                    default=TranscodeStatus.queued)
    renditions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Question(Base):
    __tablename__ = "questions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    kind: Mapped[QuestionKind] = mapped_column(_enum(QuestionKind, "question_kind"))
    prompt: Mapped[str] = mapped_column(Text)
    # multiple choice: {"options": [...], "correct": [indices]}; fill-in: {"accepted": [...], "case_sensitive": b}
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # essay: {"criteria": [{"name", "description", "points"}], "essay_set": ...}
    rubric: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    points: Mapped[float] = mapped_column(Float, default=1.0)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                         nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Assessment(Base):
    __tablename__ = "assessments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    kind: Mapped[AssessmentKind] = mapped_column(_enum(AssessmentKind, "assessment_kind"))
    weight: Mapped[float] = mapped_column(Float, default=0.0)
    due_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    max_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                         nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class AssessmentQuestion(Base):
    __tablename__ = "assessment_questions"
    __table_args__ = (UniqueConstraint("assessment_id", "question_id", name="uq_assessment_questions"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assessment_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assessments.id", ondelete="CASCADE"),
                                                     index=True)
    question_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("questions.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (
        Index("ix_submissions_assessment_user", "assessment_id", "user_id"),
        # Two concurrent submissions both counted the same earlier attempts: the database keeps only one.
        UniqueConstraint("assessment_id", "user_id", "attempt", name="uq_submissions_assessment_user_attempt"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    assessment_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assessments.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[SubmissionStatus] = mapped_column(_enum(SubmissionStatus, "submission_status"))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    submitted_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Grade(Base):
    """One grading act on a submission; the learner sees only a final one (auto or instructor)."""

    __tablename__ = "grades"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    submission_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("submissions.id", ondelete="CASCADE"),
                                                     index=True)
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    graded_by: Mapped[GradedBy] = mapped_column(_enum(GradedBy, "graded_by"))
    grader_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                        nullable=True)
    is_final: Mapped[bool] = mapped_column(default=False)
    feedback: Mapped[str] = mapped_column(Text, default="")
    # per-question scores and, for AI suggestions, the model name/version and confidence
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class GradingJobState(StrEnum):
    """Where the AI grading of one queued submission stands (the submission itself stays queued until then)."""

    pending = "pending"  # waiting for the worker (first try, or a retry after ``next_attempt_at``)
    suggested = "suggested"  # the AI suggestion is recorded; staff accept or override it
    needs_manual_grading = "needs_manual_grading"  # no usable AI grade (bad essay, no model, N failed tries)
    staff_graded = "staff_graded"  # staff graded the submission before the AI finished: its result is dropped


class GradingJob(Base):
    """The AI grading job of a queued essay submission: attempts, the last error and when to try again."""

    __tablename__ = "grading_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    submission_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("submissions.id", ondelete="CASCADE"),
                                                     unique=True)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    state: Mapped[GradingJobState] = mapped_column(_enum(GradingJobState, "grading_job_state"),
                                                   default=GradingJobState.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # why an instructor must grade by hand, or the model's reasons (shown on the review page)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    # New on every claim: renewing the lease and recording the result need it, so a worker whose lease ran out
    # and whose job another worker took cannot touch the job any more (a fencing token). Indexed: every renewal
    # and result looks the job up by it.
    claim_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(50))
    resource_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class OutboxEvent(Base):
    """The transactional outbox: written with the state change, published by the relay in ``id`` order."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_unpublished", "published_at", "id"),
        # A course's events of some types (recommendations read its content opens on every request).
        Index("ix_outbox_course_event", "course_id", "event_type"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    course_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Alert(Base):
    """An at-risk alert on one enrollment, raised by the interventions job (``pipelines.interventions``)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_course_status", "course_id", "status"),
        CheckConstraint("risk_score >= 0 AND risk_score <= 1", name="ck_alerts_risk_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    enrollment_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("enrollments.id", ondelete="CASCADE"),
                                                     index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("courses.id", ondelete="CASCADE"))
    risk_score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    # [{"key", "text", "contribution"}] largest first, and [{"kind", "label", "details"}]
    drivers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    actions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus, "alert_status"), default=AlertStatus.open)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                          nullable=True)


class AlertOutcomeRecord(Base):
    """Every outcome staff recorded on an alert (the alert's ``status`` is the latest one)."""

    __tablename__ = "alert_outcomes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    outcome: Mapped[AlertOutcome] = mapped_column(_enum(AlertOutcome, "alert_outcome"))
    action: Mapped[AlertAction | None] = mapped_column(_enum(AlertAction, "alert_action"), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("users.id", ondelete="SET NULL"),
                                                       nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
