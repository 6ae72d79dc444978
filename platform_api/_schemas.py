"""Request/response schemas per resource (Base / Create / Update / Public / ListPublic).

Inputs forbid unknown fields, bound every number and string, and refuse NUL characters and NaN, so
that no request body can reach the database in a shape it would reject (which would be a 500).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from platform_api.data import (
    ActivityType,
    AssessmentKind,
    ContentKind,
    CourseStatus,
    CourseVisibility,
    EnrollmentStatus,
    EnrollmentType,
    GradedBy,
    QuestionKind,
    ScopeType,
    SubmissionPublicStatus,
    TranscodeStatus,
    UserRole,
    UserStatus,
)

_EMAIL = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
Email = Annotated[str, StringConstraints(pattern=_EMAIL, max_length=320, to_lower=True, strip_whitespace=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
LongText = Annotated[str, StringConstraints(max_length=100_000)]
ShortText = Annotated[str, StringConstraints(max_length=1_000)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]


def _sane_year(value: datetime) -> datetime:
    # Far-away years overflow when shifted to UTC or stored; nobody schedules work there.
    if not 1970 <= value.year <= 9000:
        raise ValueError("use a date between the years 1970 and 9000")
    # Stored in UTC: SQLite keeps the wall-clock time and drops the offset, so 09:00+02:00 would read as 09:00 UTC.
    return value.astimezone(UTC)


Timestamp = Annotated[AwareDatetime, AfterValidator(_sane_year)]

EVENT_CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of the server clock a client's event time may be


def _not_in_the_future(value: datetime) -> datetime:
    # A future event would count as an open for years to come, and analytics (pandas) cannot hold dates after 2262.
    now = datetime.now(UTC)
    if value > now + EVENT_CLOCK_SKEW:
        raise ValueError(f"an event's timestamp may be at most {EVENT_CLOCK_SKEW.seconds // 60} minutes ahead of "
                         f"the server clock (now {now:%Y-%m-%dT%H:%M:%SZ}); send when it happened, "
                         "or leave it out for now")
    return value


EventTimestamp = Annotated[Timestamp, AfterValidator(_not_in_the_future)]

# Metadata and payloads are free-form JSON, within limits: every reader (the API's responses, exports, JSON
# columns, pandas) must be able to walk them, and Python's JSON encoder fails on deep nesting.
JSON_MAX_DEPTH = 16
JSON_MAX_BYTES = 64 * 1024


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    stack = [(value, 1)]
    while stack:  # iterative: a recursive walk is what deep nesting breaks
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > JSON_MAX_DEPTH:
                    raise ValueError(f"JSON may nest at most {JSON_MAX_DEPTH} levels of objects and lists; "
                                     "flatten it")
                stack.append((child, depth + 1))
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))
    if size > JSON_MAX_BYTES:
        raise ValueError(f"JSON may be at most {JSON_MAX_BYTES // 1024} KiB ({size:,} bytes sent); store large "
                         "data as content or media instead")
    return value


JsonObject = Annotated[dict[str, Any], Field(max_length=100), AfterValidator(_bounded_json)]


# A request body's own structure (lists of items, answers) adds a few levels on top of a metadata field's.
BODY_MAX_DEPTH = JSON_MAX_DEPTH + 4


def _reject_unstorable(value: Any) -> None:
    """NUL characters and non-finite numbers cannot be stored (PostgreSQL text/JSON refuse them); nesting deeper
    than any field allows is refused before anything walks it recursively."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL (\\u0000) characters")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates ("\ud800") are valid JSON but not storable text
                raise ValueError("text must be valid Unicode (no lone surrogate code points)") from exc
        elif isinstance(item, dict | list | tuple):
            if depth >= BODY_MAX_DEPTH:
                raise ValueError(f"the body nests objects and lists more than {BODY_MAX_DEPTH} levels deep; "
                                 f"metadata and payloads may nest at most {JSON_MAX_DEPTH} levels")
            children = [part for pair in item.items() for part in pair] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Update bodies: fields where an explicit null clears the stored value (elsewhere null means "leave as is").
    CLEARABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _only_storable_values(cls, data: Any) -> Any:
        _reject_unstorable(data)
        return data

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent, as stored values: nulls dropped except for :attr:`CLEARABLE` fields, and
        nested models without their unset (null) parts."""
        cleared = {field: None for field in self.CLEARABLE & self.model_fields_set if getattr(self, field) is None}
        return self.model_dump(exclude_unset=True, exclude_none=True) | cleared


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


T = TypeVar("T")


class Page(OutputModel, Generic[T]):
    data: list[T]
    count: int = Field(description="Total number of matching rows (not just this page).")
    limit: int
    offset: int


# --- errors -----------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["Course 3f2… does not exist; list courses with GET /api/v1/courses"])
    details: dict[str, Any] | list[Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


# --- auth -------------------------------------------------------------------------------------------
class LoginRequest(InputModel):
    email: Email = Field(examples=["ada@example.org"])
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(examples=["correct horse"])


class RefreshRequest(InputModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4000)]


class TokenPair(OutputModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user_id: uuid.UUID


# --- users ------------------------------------------------------------------------------------------
class UserBase(InputModel):
    email: Email = Field(examples=["ada@example.org"])
    name: Name = Field(examples=["Ada Lovelace"])
    metadata: JsonObject = Field(default_factory=dict)


class UserCreate(UserBase):
    password: Password = Field(examples=["a long passphrase"])
    role: UserRole = UserRole.student


class UserUpdate(InputModel):
    email: Email | None = None
    name: Name | None = None
    metadata: JsonObject | None = Field(default=None, description=(
        "Replaces the metadata. The access-relevant keys institution_id and id_student are set by admins only: "
        "a user's own update keeps them as stored and may not change them (403)."))
    password: Password | None = Field(default=None, description=(
        "Ends every session of the user: tokens issued before the change are refused (401); sign in again."))
    status: UserStatus | None = Field(default=None, description="Only admins may change status.")
    role: UserRole | None = Field(default=None, description="Only admins may change the account role.")


class UserPublic(OutputModel):
    id: uuid.UUID
    email: str
    name: str
    role: UserRole
    status: UserStatus
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    updated_at: datetime


UsersPublic = Page[UserPublic]

RoleName = Literal["admin", "instructor", "teaching_assistant", "creator", "student", "operator"]


class RoleGrantCreate(InputModel):
    role_name: RoleName = Field(examples=["instructor"])
    scope_type: ScopeType = Field(default=ScopeType.global_, examples=["course"])
    scope_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="Required unless scope_type is global (a course id, institution id, group id).")

    @model_validator(mode="after")
    def _scope_id_matches_type(self) -> RoleGrantCreate:
        if self.scope_type is ScopeType.global_ and self.scope_id is not None:
            raise ValueError("a global grant takes no scope_id; drop it or choose another scope_type")
        if self.scope_type is not ScopeType.global_ and self.scope_id is None:
            raise ValueError(f"scope_type '{self.scope_type.value}' needs a scope_id")
        return self


class RoleGrantPublic(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID
    role_name: str
    scope_type: ScopeType
    scope_id: str | None
    created_at: datetime


class PermissionsPublic(OutputModel):
    user_id: uuid.UUID
    role: UserRole
    roles: list[str] = Field(description="Account role plus scoped grants as role@scope_type:scope_id.")
    permissions: list[str] = Field(description="Permissions in the asked scope (global unless course_id given).")
    course_id: uuid.UUID | None = None


# --- courses ----------------------------------------------------------------------------------------
CreditHours = Annotated[Decimal, Field(ge=0, le=99.9, max_digits=3, decimal_places=1)]


StartsAtDoc = ("When week 1 begins: content planned weeks, catch-up before assessments and recommendations count "
               "the course's weeks from here (default: the course's creation; null on update goes back to it).")


def _plausible_start(value: datetime) -> datetime:
    # Analytics (pandas) cannot represent dates after 2262; no course starts that late.
    if value.year > 2200:
        raise ValueError("a course starts before the year 2200")
    return value


StartsAt = Annotated[Timestamp, AfterValidator(_plausible_start)]


class CourseBase(InputModel):
    title: Title = Field(examples=["Introduction to Statistics"])
    description: LongText = ""
    visibility: CourseVisibility = CourseVisibility.public
    enrollment_type: EnrollmentType = EnrollmentType.open
    duration_weeks: int | None = Field(default=None, ge=1, le=520, examples=[12])
    starts_at: StartsAt | None = Field(default=None, description=StartsAtDoc)
    credit_hours: CreditHours | None = Field(default=None, examples=["3.0"])
    metadata: JsonObject = Field(default_factory=dict, examples=[{"institution_id": "ou", "level": "intro"}])


class CourseCreate(CourseBase):
    instructor_id: uuid.UUID | None = Field(default=None, description="Defaults to the caller.")


class CourseUpdate(InputModel):
    CLEARABLE = frozenset({"starts_at"})

    title: Title | None = None
    description: LongText | None = None
    status: CourseStatus | None = Field(default=None, description="draft → review → published → archived")
    visibility: CourseVisibility | None = None
    enrollment_type: EnrollmentType | None = None
    duration_weeks: int | None = Field(default=None, ge=1, le=520)
    starts_at: StartsAt | None = Field(default=None, description=StartsAtDoc)
    credit_hours: CreditHours | None = None
    instructor_id: uuid.UUID | None = None
    metadata: JsonObject | None = None


class CoursePublic(OutputModel):
    id: uuid.UUID
    title: str
    description: str
    instructor_id: uuid.UUID | None
    created_by: uuid.UUID | None
    status: CourseStatus
    visibility: CourseVisibility
    enrollment_type: EnrollmentType
    duration_weeks: int | None
    starts_at: datetime | None
    credit_hours: Decimal | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    created_at: datetime
    updated_at: datetime


CoursesPublic = Page[CoursePublic]


# --- enrollments ------------------------------------------------------------------------------------
class EnrollmentCreate(InputModel):
    user_id: uuid.UUID | None = Field(default=None, description="Defaults to the caller (self-enrollment).")


class ProgressUpdate(InputModel):
    progress: float = Field(ge=0, le=100, examples=[42.5])
    status: Literal[EnrollmentStatus.enrolled, EnrollmentStatus.completed, EnrollmentStatus.dropped] | None = None


class EnrollmentPublic(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID
    course_id: uuid.UUID
    progress: float
    status: EnrollmentStatus
    completed_at: datetime | None
    started_at: datetime
    created_at: datetime


EnrollmentsPublic = Page[EnrollmentPublic]


# --- content ----------------------------------------------------------------------------------------
class Accessibility(InputModel):
    captions_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    alt_text: ShortText | None = None
    transcript: LongText | None = None
    language: Annotated[str, StringConstraints(max_length=20)] | None = Field(default=None, examples=["en"])
    audio_description: bool | None = None


MAX_PLANNED_WEEK = 520  # ten years of weeks; also a course's longest duration_weeks
MAX_PLAN_CHANGES = 2000  # items one PUT /courses/{id}/plan may move
PlannedWeek = Annotated[int | None, Field(
    ge=1, le=MAX_PLANNED_WEEK, examples=[3],
    description="The course week (1 = the first) this item is planned for, at most the course's duration_weeks. "
                "Recommendations favour items of the current and past weeks and hold later weeks' items back.")]


class ContentBase(InputModel):
    title: Title = Field(examples=["Week 1: what is a distribution?"])
    body: LongText = ""
    file_path: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        default=None, description="Media file relative to <data_dir>/media (for video/audio).")
    position: int = Field(default=0, ge=0, le=100_000)
    planned_week: PlannedWeek = None
    accessibility: Accessibility = Field(default_factory=Accessibility)


class ContentCreate(ContentBase):
    course_id: uuid.UUID
    kind: ContentKind = ContentKind.text


class ContentUpdate(InputModel):
    CLEARABLE = frozenset({"planned_week"})

    title: Title | None = None
    body: LongText | None = None
    file_path: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    position: int | None = Field(default=None, ge=0, le=100_000)
    planned_week: PlannedWeek = Field(default=None, description="A week number sets the plan; null clears it.")
    accessibility: Accessibility | None = None


class ContentPublic(OutputModel):
    id: uuid.UUID
    course_id: uuid.UUID
    kind: ContentKind
    title: str
    body: str
    file_path: str | None
    position: int
    planned_week: int | None
    version: int
    accessibility: dict[str, Any]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


ContentListPublic = Page[ContentPublic]


# --- the course plan --------------------------------------------------------------------------------
class PlanItemPublic(OutputModel):
    id: uuid.UUID
    title: str
    kind: ContentKind
    position: int
    planned_week: int | None
    opened_by: int | None = Field(description="Active learners who have opened the item; null for callers who do "
                                              "not see learners' activity (content editors without a staff role).")
    behind: bool = Field(description="Planned for the current week or earlier and opened by fewer than half of the "
                                     "active learners: what the catch-up slot of their recommendations pushes.")


class PlanAssessmentPublic(OutputModel):
    id: uuid.UUID
    title: str
    kind: AssessmentKind
    due_at: datetime | None


class PlanWeekPublic(OutputModel):
    week: int = Field(description="1 = the course's first week")
    starts_at: datetime
    items: list[PlanItemPublic] = Field(description="Content planned for this week, in course order")
    assessments: list[PlanAssessmentPublic] = Field(description="Assessments due this week")


class CoursePlanPublic(OutputModel):
    course_id: uuid.UUID
    starts_at: datetime = Field(description="When week 1 begins: the course's starts_at, else its creation")
    duration_weeks: int | None
    current_week: int | None = Field(description="The week today falls in; null before the course starts")
    learners: int | None = Field(description="Active enrollments; null as for opened_by")
    weeks: list[PlanWeekPublic]
    unplanned: list[PlanItemPublic] = Field(description="Content without a planned week, in course order")
    unscheduled_assessments: list[PlanAssessmentPublic] = Field(
        description="Assessments without a due date (or due after week 520)")
    can_edit: bool = Field(description="Whether the caller may change the plan (PUT)")


class PlannedWeekChange(InputModel):
    content_id: uuid.UUID
    planned_week: PlannedWeek = Field(description="The week to plan the item for; null takes it out of the plan.")


class CoursePlanUpdate(InputModel):
    items: list[PlannedWeekChange] = Field(min_length=1, max_length=MAX_PLAN_CHANGES)

    @field_validator("items")
    @classmethod
    def _each_item_once(cls, items: list[PlannedWeekChange]) -> list[PlannedWeekChange]:
        ids = [change.content_id for change in items]
        if len(set(ids)) != len(ids):
            raise ValueError("each content_id may appear once")
        return items


class CoursePlanChangePublic(OutputModel):
    changed: int = Field(description="Items whose planned week changed (each got a new content version)")
    plan: CoursePlanPublic


class TranscodeJobPublic(OutputModel):
    id: uuid.UUID
    content_id: uuid.UUID
    status: TranscodeStatus
    renditions: list[Any]
    error: str | None
    created_at: datetime
    updated_at: datetime


class StreamingUrlPublic(OutputModel):
    url: str
    expires_at: datetime


# --- questions --------------------------------------------------------------------------------------
Points = Annotated[float, Field(gt=0, le=1000)]


class _QuestionBase(InputModel):
    course_id: uuid.UUID
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class MultipleChoiceQuestionCreate(_QuestionBase):
    kind: Literal[QuestionKind.multiple_choice] = QuestionKind.multiple_choice
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] = Field(min_length=2,
                                                                                             max_length=20)
    correct: list[Annotated[int, Field(ge=0, le=19)]] = Field(min_length=1, max_length=20,
                                                             description="Indices of the correct options.")
    points: Points = 1.0

    @model_validator(mode="after")
    def _correct_within_options(self) -> MultipleChoiceQuestionCreate:
        if any(index >= len(self.options) for index in self.correct):
            raise ValueError(f"correct indices must be < {len(self.options)} (the number of options)")
        return self


class FillInTheBlankQuestionCreate(_QuestionBase):
    kind: Literal[QuestionKind.fill_in_the_blank] = QuestionKind.fill_in_the_blank
    accepted: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(min_length=1,
                                                                                           max_length=50)
    case_sensitive: bool = False
    points: Points = 1.0


class RubricCriterion(InputModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: ShortText = ""
    points: Points


class Rubric(InputModel):
    criteria: list[RubricCriterion] = Field(min_length=1, max_length=20)
    essay_set: int | None = Field(default=None, ge=1, le=1000, description="ASAP prompt id, when applicable.")


class EssayQuestionCreate(_QuestionBase):
    kind: Literal[QuestionKind.essay] = QuestionKind.essay
    rubric: Rubric
    min_words: int = Field(default=0, ge=0, le=10_000)


QuestionCreate = Annotated[
    MultipleChoiceQuestionCreate | FillInTheBlankQuestionCreate | EssayQuestionCreate,
    Field(discriminator="kind"),
]


class QuestionPublic(OutputModel):
    id: uuid.UUID
    course_id: uuid.UUID
    kind: QuestionKind
    prompt: str
    points: float
    options: list[str] | None = None
    rubric: dict[str, Any] | None = None
    answer_key: dict[str, Any] | None = Field(default=None, description="Only shown to course staff.")
    created_at: datetime


# --- assessments ------------------------------------------------------------------------------------
class AssessmentCreate(InputModel):
    course_id: uuid.UUID
    title: Title = Field(examples=["Quiz 1"])
    kind: AssessmentKind = AssessmentKind.quiz
    weight: float = Field(default=0.0, ge=0, le=100)
    due_at: Timestamp | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    question_ids: list[uuid.UUID] = Field(default_factory=list, max_length=200)
    metadata: JsonObject = Field(default_factory=dict, description="Free-form; `essay_prompt` names the ASAP prompt "
                                                                   "whose model grades the essays whose rubric names "
                                                                   "none.")

    @field_validator("metadata")
    @classmethod
    def _known_essay_prompt(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        from learnloop.datasets.asap import PROMPT_SCORE_RANGES

        value = metadata.get("essay_prompt")
        if value is None:
            return metadata
        known = sorted(PROMPT_SCORE_RANGES)
        text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
        if not (text.isascii() and text.isdigit() and int(text) in PROMPT_SCORE_RANGES):
            raise ValueError(f"essay_prompt {value!r} is not an ASAP prompt the AI grader knows; use one of "
                             f"{', '.join(map(str, known))} (or leave it out to grade by hand)")
        return {**metadata, "essay_prompt": int(text)}


class AssessmentPublic(OutputModel):
    id: uuid.UUID
    course_id: uuid.UUID
    title: str
    kind: AssessmentKind
    weight: float
    due_at: datetime | None
    max_attempts: int | None
    metadata: dict[str, Any]
    questions: list[QuestionPublic]
    created_at: datetime


# --- submissions and grades -------------------------------------------------------------------------
Answer = (Annotated[int, Field(ge=0, le=100)] | list[Annotated[int, Field(ge=0, le=100)]]
          | Annotated[str, StringConstraints(max_length=100_000)])


class SubmissionCreate(InputModel):
    assessment_id: uuid.UUID
    answers: dict[uuid.UUID, Answer] = Field(
        max_length=200, description="question id → option index(es) for multiple choice, text otherwise.",
        examples=[{"5b8e…": [1], "9c1d…": "mitochondria", "a7f2…": "An essay…"}])


class GradePublic(OutputModel):
    id: uuid.UUID
    score: float
    max_score: float
    graded_by: GradedBy
    grader_id: uuid.UUID | None
    is_final: bool
    feedback: str
    details: dict[str, Any]
    created_at: datetime


GradeLabel = Literal["AI-assisted", "Instructor-graded", "Auto-graded"]


class SubmissionPublic(OutputModel):
    id: uuid.UUID
    assessment_id: uuid.UUID
    user_id: uuid.UUID
    course_id: uuid.UUID
    status: SubmissionPublicStatus = Field(description="Course staff read the stored status; the learner reads "
                                           "`in_review` until staff decide (never whether the AI suggested a grade).")
    attempt: int
    answers: dict[str, Any]
    submitted_at: datetime
    score: float | None = Field(default=None, description="Null until the grade is final.")
    max_score: float | None = None
    feedback: str | None = None
    grade_label: GradeLabel | None = Field(default=None, description="How the final grade was made: "
                                           "'AI-assisted' when staff accepted the AI suggestion.")
    grades: list[GradePublic] | None = Field(default=None, description="Grading history; course staff only.")


class GradeUpdate(InputModel):
    score: float | None = Field(default=None, ge=0, le=100_000)
    feedback: LongText = ""
    accept_ai: bool = Field(default=False, description="Accept the AI suggestion as the final grade.")

    @model_validator(mode="after")
    def _score_or_accept(self) -> GradeUpdate:
        if self.score is None and not self.accept_ai:
            raise ValueError("give a score, or set accept_ai to true to accept the AI suggestion")
        return self


class UserAssessmentPublic(OutputModel):
    assessment_id: uuid.UUID
    course_id: uuid.UUID
    title: str
    kind: AssessmentKind
    due_at: datetime | None
    submission_id: uuid.UUID | None
    status: SubmissionPublicStatus | None = Field(description="The latest submission's status (null: none yet); "
                                                  "`in_review` for the learner until staff decide.")
    score: float | None
    max_score: float | None
    grade_label: GradeLabel | None = None


UserAssessmentsPublic = Page[UserAssessmentPublic]


# --- AI-assisted grading review ---------------------------------------------------------------------
class ReviewState(StrEnum):
    """Where an undecided essay submission stands in the course's grading queue."""

    needs_manual_grading = "needs_manual_grading"  # no usable AI grade: grade from scratch (reasons say why)
    ai_suggested = "ai_suggested"  # accept or override the AI suggestion
    retrying = "retrying"  # the AI grading job failed and will be retried
    waiting_for_ai = "waiting_for_ai"  # not graded by the AI yet


class AiGradeAccept(InputModel):
    feedback: LongText = Field(default="", description="Optional note for the learner.",
                               examples=["Clear position, well supported."])


class AiGradeOverride(InputModel):
    score: float = Field(ge=0, le=100_000, description="The final score in assessment points.", examples=[8])
    comment: LongText = Field(default="", description="Why this score; required when it differs from the AI's "
                                                      "suggestion (the learner reads it).",
                              examples=["Your reasons are good; give an example for each."])


class GradingQueueEssayPublic(OutputModel):
    question_id: uuid.UUID
    question_prompt: str
    essay: str
    prompt_id: int | None = Field(description="The ASAP prompt whose model grades it (None: grade by hand).")
    rubric: dict[str, Any]
    points: float
    score_range: list[int] | None = Field(description="The prompt's score scale [low, high].")
    ai_score: int | None = Field(description="AI score on the prompt's scale.")
    ai_points: float | None = Field(description="AI score in this question's points.")
    interval: list[int] | None = Field(description="Conformal interval of the AI score (prompt scale).")
    confidence: float | None
    reasons: list[str]


class GradingQueueItemPublic(OutputModel):
    submission_id: uuid.UUID
    assessment_id: uuid.UUID
    assessment_title: str
    course_id: uuid.UUID
    user_id: uuid.UUID
    learner_name: str | None
    attempt: int
    submitted_at: datetime
    review_state: ReviewState
    ai_score: float | None = Field(description="The AI-suggested total in assessment points.")
    max_score: float
    confidence: float | None
    needs_review: bool
    reasons: list[str]
    model_version: str | None
    grading_attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    essays: list[GradingQueueEssayPublic]


class PromptAgreementPublic(OutputModel):
    prompt_id: int
    n: int
    qwk: float | None = Field(description="Quadratic weighted kappa, AI vs staff (None below 2 decisions).")
    exact: float


class GradingAgreementPublic(OutputModel):
    window: int = Field(description="Last decisions per prompt taken into account.")
    n: int
    qwk: float | None = Field(description="QWK over the pooled windows of every prompt.")
    by_prompt: list[PromptAgreementPublic]


class GradingQueuePublic(Page[GradingQueueItemPublic]):
    agreement: GradingAgreementPublic


# --- learner activity -------------------------------------------------------------------------------
class ActivityEventCreate(InputModel):
    event_type: ActivityType = Field(examples=["video_play"])
    course_id: uuid.UUID | None = None
    content_id: uuid.UUID | None = None
    session_id: Annotated[str, StringConstraints(max_length=100)] | None = None
    timestamp: EventTimestamp | None = Field(
        default=None, description="When it happened (defaults to now); at most 5 minutes ahead of the server clock.")
    payload: JsonObject = Field(default_factory=dict, examples=[{"position_s": 93.5}])


class EventAccepted(OutputModel):
    event_id: uuid.UUID
    topic: str


# --- at-risk alerts ---------------------------------------------------------------------------------
class AlertDriverPublic(OutputModel):
    key: str = Field(description="The feature group behind the driver, e.g. inactivity, missed_assessments")
    text: str = Field(examples=["no activity in 12 days"])
    contribution: float = Field(description="How much lower the risk would be with this group at the course "
                                            "cohort's median (probability points, 0..1)")


class AlertActionPublic(OutputModel):
    kind: str = Field(examples=["message_learner"], description="message_learner | recommend_content | "
                                                                "extend_deadline")
    label: str
    details: dict[str, Any] = Field(default_factory=dict)


class AlertPublic(OutputModel):
    id: uuid.UUID
    course_id: uuid.UUID
    user_id: uuid.UUID
    enrollment_id: uuid.UUID
    learner_name: str
    risk_score: float
    threshold: float
    model_name: str
    model_version: str
    drivers: list[AlertDriverPublic]
    actions: list[AlertActionPublic]
    status: str = Field(description="open | action_taken | dismissed | not_useful")
    created_at: datetime
    resolved_at: datetime | None = None


AlertsPublic = Page[AlertPublic]


class AlertOutcomeCreate(InputModel):
    outcome: Literal["action_taken", "dismissed", "not_useful"] = Field(examples=["action_taken"])
    action: Literal["message_learner", "recommend_content", "extend_deadline", "other"] | None = Field(
        default=None, description="Required with action_taken: which intervention you made",
        examples=["message_learner"])
    note: Annotated[str, StringConstraints(max_length=2000)] = Field(
        default="", examples=["Emailed to offer a catch-up session"])


class AlertReportPublic(OutputModel):
    course_id: uuid.UUID | None
    total: int
    by_status: dict[str, int]
    by_action: dict[str, int]
    resolved: int
    share_resolved: float | None
    share_useful: float | None = Field(description="1 − not_useful / resolved; null until an alert is resolved")
    share_acted: float | None = Field(description="action_taken / resolved")
