"""Plain data crossing the platform API boundary: the states and kinds of the LMS, as enums.

Other packages (the OULAD import, the essay grader) use these with ``platform_api.api``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class UserRole(StrEnum):
    """The account type of a user (``users.role``)."""

    student = "student"
    instructor = "instructor"
    admin = "admin"
    creator = "creator"


class UserStatus(StrEnum):
    active = "active"
    inactive = "inactive"
    suspended = "suspended"


class ScopeType(StrEnum):
    """Where a ``user_roles`` grant applies."""

    global_ = "global"
    institution = "institution"
    course = "course"
    group = "group"


class CourseStatus(StrEnum):
    draft = "draft"
    review = "review"
    published = "published"
    archived = "archived"


class CourseVisibility(StrEnum):
    private = "private"
    institution = "institution"
    public = "public"


class EnrollmentType(StrEnum):
    open = "open"
    invite_only = "invite_only"
    closed = "closed"


class EnrollmentStatus(StrEnum):
    enrolled = "enrolled"
    completed = "completed"
    dropped = "dropped"
    suspended = "suspended"


class ContentKind(StrEnum):
    text = "text"
    video = "video"
    audio = "audio"
    document = "document"
    link = "link"


class QuestionKind(StrEnum):
    multiple_choice = "multiple_choice"
    fill_in_the_blank = "fill_in_the_blank"
    essay = "essay"


class AssessmentKind(StrEnum):
    quiz = "quiz"
    exam = "exam"
    assignment = "assignment"


class SubmissionStatus(StrEnum):
    """``graded`` is the only state in which a learner sees a score."""

    graded = "graded"  # final: auto-graded at once, or an instructor accepted/overrode
    queued_for_ai_grading = "queued_for_ai_grading"
    ai_suggested = "ai_suggested"  # the AI wrote a suggestion; invisible to the learner until staff decide


class SubmissionPublicStatus(StrEnum):
    """A submission's status as its viewer reads it. Course staff read the stored status (``graded``,
    ``queued_for_ai_grading``, ``ai_suggested``); the learner, and anyone else who is not on the course's staff,
    reads ``in_review`` until staff decide — whether the AI has suggested a grade yet is staff's working state, and
    a learner must not learn that a suggestion exists before staff accept or override it."""

    graded = "graded"  # final: the score is shown
    queued_for_ai_grading = "queued_for_ai_grading"  # staff only: waiting for the AI grader
    ai_suggested = "ai_suggested"  # staff only: an AI suggestion waits for staff to accept or override it
    in_review = "in_review"  # what learners read instead of the two above: submitted, waiting for staff to grade it


class GradedBy(StrEnum):
    auto = "auto"
    ai = "ai"
    instructor = "instructor"


class TranscodeStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class ActivityType(StrEnum):
    """Learner activity accepted by ``POST /api/v1/events`` (published on ``lms.analytics.events``)."""

    page_view = "page_view"
    video_play = "video_play"
    video_pause = "video_pause"
    video_complete = "video_complete"
    resource_click = "resource_click"
    content_view = "content_view"
    forum_post = "forum_post"
    quiz_start = "quiz_start"


@dataclass(frozen=True)
class NewUser:
    """One user for :func:`platform_api.api.create_users`."""

    email: str
    name: str
    role: UserRole = UserRole.student
    password: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID | None = None


@dataclass(frozen=True)
class NewCourse:
    """One course for :func:`platform_api.api.create_courses`."""

    title: str
    instructor_id: uuid.UUID
    description: str = ""
    status: CourseStatus = CourseStatus.published
    visibility: CourseVisibility = CourseVisibility.public
    enrollment_type: EnrollmentType = EnrollmentType.open
    duration_weeks: int | None = None
    credit_hours: Decimal | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID | None = None
    starts_at: datetime | None = None  # when week 1 begins (None: the course's creation)


@dataclass(frozen=True)
class NewEnrollment:
    user_id: uuid.UUID
    course_id: uuid.UUID
    status: EnrollmentStatus = EnrollmentStatus.enrolled
    progress: float = 0.0
    # Set by imports (``platform_api.api.import_records``): a stable id and the historical dates.
    id: uuid.UUID | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class NewContent:
    course_id: uuid.UUID
    title: str
    kind: ContentKind = ContentKind.text
    body: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID | None = None
    planned_week: int | None = None  # course week (1 = the first) the item is planned for


@dataclass(frozen=True)
class SearchableContent:
    """A content item's current text, what the search index holds for it (``platform_api.api.searchable_content``)."""

    content_id: str
    course_id: str
    title: str
    body: str
    kind: str


@dataclass(frozen=True)
class NewAssessment:
    course_id: uuid.UUID
    title: str
    kind: AssessmentKind = AssessmentKind.assignment
    weight: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class NewSubmission:
    """An already-graded submission from an import (e.g. OULAD studentAssessment) or a learner's answers."""

    assessment_id: uuid.UUID
    user_id: uuid.UUID
    answers: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    max_score: float = 100.0
    metadata: dict[str, Any] = field(default_factory=dict)
    # Set by imports (``platform_api.api.import_records``): a stable id, the historical date, the course.
    id: uuid.UUID | None = None
    submitted_at: datetime | None = None
    course_id: uuid.UUID | None = None


@dataclass(frozen=True)
class PendingEssay:
    """An essay answer waiting for an AI grade (what the grading engineer reads)."""

    submission_id: uuid.UUID
    question_id: uuid.UUID
    prompt: str
    essay: str
    rubric: dict[str, Any]
    max_points: float


@dataclass(frozen=True)
class MLBackends:
    """In-process ML functions handed to ``create_app(ml=...)`` by the process that starts the API.

    ``recommender.api`` imports ``models.api`` (the ONNX text embedder; ``models._champion`` imports mlflow), so
    ``platform_api`` may not import it (import-linter: the platform reaches ML only through serving and package
    api surfaces). The composition root wires it instead::

        create_app(settings, ml=MLBackends(search=recommender.api.search, recommend=recommender.api.recommend))

    A route whose backend is None answers 503 (search) or its documented fallback (recommendations), never 500.
    """

    # recommender.api.search(query, *, allowed_course_ids, course_id, limit, settings) -> list[SearchHit]
    search: Callable[..., list[Any]] | None = None
    # recommender.api.recommend(*, user_id, course_id, interactions, items, day, limit, ...) -> RecommendationList
    recommend: Callable[..., Any] | None = None
    # health rows of the parts the composition root runs beside the API (the search indexer), as
    # {"name", "status", "detail", "figures"} dicts for the operator page
    health: Callable[[], list[dict[str, Any]]] | None = None


# --- at-risk alerts (raised by ``pipelines.interventions``, acted on by course staff) ------------------
class AlertStatus(StrEnum):
    """``open`` until course staff record an outcome; then the latest outcome."""

    open = "open"
    action_taken = "action_taken"
    dismissed = "dismissed"
    not_useful = "not_useful"
    superseded = "superseded"  # replaced by a newer alert of the same enrollment (the job re-alerted)


class AlertOutcome(StrEnum):
    """What course staff did with an alert (``POST /api/v1/alerts/{id}/outcome``)."""

    action_taken = "action_taken"
    dismissed = "dismissed"  # seen, no action needed now
    not_useful = "not_useful"  # the alert was wrong or unhelpful: a negative label for the next training run


class AlertAction(StrEnum):
    """The interventions an alert suggests, and what staff say they did."""

    message_learner = "message_learner"
    recommend_content = "recommend_content"
    extend_deadline = "extend_deadline"
    other = "other"


@dataclass(frozen=True)
class ScoringTarget:
    """One active enrollment with the model-side keys the risk model knows it by (None when not linked)."""

    enrollment_id: uuid.UUID
    user_id: uuid.UUID
    course_id: uuid.UUID
    id_student: int | None
    presentation: str | None


@dataclass(frozen=True)
class PriorAlert:
    """The latest alert of an enrollment (what the cooldown compares against)."""

    alert_id: uuid.UUID
    enrollment_id: uuid.UUID
    risk_score: float
    status: AlertStatus
    created_at: Any  # datetime (aware)


@dataclass(frozen=True)
class NewAlert:
    """One alert for :func:`platform_api.api.record_alerts`.

    ``drivers``: ``[{"key", "text", "contribution"}]`` (largest first); ``actions``: ``[{"kind": AlertAction,
    "label", "details"}]``.
    """

    enrollment_id: uuid.UUID
    risk_score: float
    threshold: float
    model_name: str
    model_version: str
    drivers: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AlertLabel:
    """A staff verdict on an alert, exported as a label for the next training run."""

    alert_id: uuid.UUID
    id_student: int | None
    presentation: str | None
    risk_score: float
    model_version: str
    outcome: AlertStatus
    action: str | None
    raised_at: Any  # datetime
    resolved_at: Any  # datetime | None
