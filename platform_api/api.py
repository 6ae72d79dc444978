"""What other packages may call on the platform (the OULAD import, the essay grader, the interventions job).

Everything here works on a SQLAlchemy session from :func:`open_session` and writes through the same
service code and transactional outbox as the HTTP API, so imported data and AI grades emit the same
events. ``actor=None`` inside means "the trusted system"; no HTTP authorization applies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput
from learnloop.events import Event, Topic, topic_for
from learnloop.settings import Settings, get_settings
from platform_api import _assessments, _grading_review, _migrate, _users
from platform_api._db import get_or_not_found, make_engine, make_sessionmaker
from platform_api._models import (
    Assessment,
    ContentItem,
    ContentVersion,
    Course,
    Enrollment,
    Grade,
    Submission,
    User,
)
from platform_api._outbox import EventBus, NatsPublisher, OutboxRelay, emit
from platform_api.data import (
    AlertLabel,
    CourseStatus,
    EnrollmentStatus,
    GradedBy,
    NewAlert,
    NewAssessment,
    NewContent,
    NewCourse,
    NewEnrollment,
    NewSubmission,
    NewUser,
    PendingEssay,
    PriorAlert,
    ScoringTarget,
    SearchableContent,
    SubmissionStatus,
    UserStatus,
)

__all__ = [
    "create_admin", "create_assessments", "create_content_items", "create_courses", "create_users",
    "downgrade", "emit_event", "enroll_users", "migrate", "open_session", "pending_essays", "record_ai_grade",
    "enrollment_status_of", "import_records", "read_events", "record_submissions", "relay_pending", "subscribe",
]


def migrate(settings: Settings | None = None, revision: str = "head") -> None:
    """Bring the platform database (``settings.sqlalchemy_url``) to ``revision`` with Alembic."""
    settings = settings or get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        _migrate.upgrade(engine, revision)
    finally:
        engine.dispose()


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` (``base`` drops every platform table)."""
    settings = settings or get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        _migrate.downgrade(engine, revision)
    finally:
        engine.dispose()


@contextmanager
def open_session(settings: Settings | None = None, *, migrate_first: bool = True) -> Iterator[Session]:
    """A session on the platform database (migrated to head first unless told otherwise)."""
    settings = settings or get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if migrate_first:
            _migrate.upgrade(engine)
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def create_admin(*, session: Session, email: str, name: str, password: str) -> uuid.UUID:
    """Bootstrap an admin account (what ``learnloop users create-admin`` calls)."""
    return _users.bootstrap_admin(session=session, email=email, name=name, password=password).id


def create_users(*, session: Session, users: Iterable[NewUser]) -> list[uuid.UUID]:
    """Insert users in one transaction (one ``user.created`` event each). Users without a password cannot
    log in until one is set; imports use that to avoid hashing thousands of passwords."""
    from platform_api._security import hash_password

    rows = [User(id=u.id or uuid.uuid4(), email=u.email.strip().lower(), name=u.name, role=u.role,
                 status=UserStatus.active, password_hash=hash_password(u.password) if u.password else None,
                 metadata_=dict(u.metadata)) for u in users]
    emails = [r.email for r in rows]
    if len(set(emails)) != len(emails):
        raise InvalidInput("Duplicate emails within the batch; make them unique")
    taken = set(session.scalars(select(User.email).where(User.email.in_(emails)))) if emails else set()
    if taken:
        raise Conflict(f"{len(taken)} emails already exist (e.g. {sorted(taken)[:3]}); skip or rename them")
    session.add_all(rows)
    for row in rows:
        emit(session, event_type="user.created", user_id=row.id, payload={"role": row.role.value, "import": True})
    session.commit()
    return [r.id for r in rows]


def create_courses(*, session: Session, courses: Iterable[NewCourse]) -> list[uuid.UUID]:
    """Insert courses (default status published) in one transaction."""
    rows = [Course(id=c.id or uuid.uuid4(), title=c.title, description=c.description, instructor_id=c.instructor_id,
                   created_by=c.instructor_id, status=c.status, visibility=c.visibility,
                   enrollment_type=c.enrollment_type, duration_weeks=c.duration_weeks, credit_hours=c.credit_hours,
                   starts_at=c.starts_at, metadata_=dict(c.metadata)) for c in courses]
    session.add_all(rows)
    for row in rows:
        emit(session, event_type="course.created", user_id=row.instructor_id, course_id=row.id,
             payload={"title": row.title, "import": True,
                      "start": row.starts_at.isoformat() if row.starts_at else None})
        if row.status is CourseStatus.published:
            emit(session, event_type="course.published", user_id=row.instructor_id, course_id=row.id,
                 payload={"import": True})
    session.commit()
    return [r.id for r in rows]


def enroll_users(*, session: Session, enrollments: Iterable[NewEnrollment],
                 started_at: Callable[[NewEnrollment], datetime | None] | None = None) -> list[uuid.UUID]:
    """Insert enrollments (any status, e.g. OULAD withdrawals as ``dropped``) in one transaction."""
    rows = []
    for e in enrollments:
        if not 0 <= e.progress <= 100:
            raise InvalidInput(f"progress {e.progress} of user {e.user_id} must be within 0..100")
        row = Enrollment(user_id=e.user_id, course_id=e.course_id, status=e.status, progress=e.progress)
        when = started_at(e) if started_at else None
        if when is not None:
            row.started_at = when
        rows.append(row)
    session.add_all(rows)
    session.flush()
    for row in rows:
        emit(session, event_type="enrollment.created", user_id=row.user_id, course_id=row.course_id,
             payload={"enrollment_id": str(row.id), "status": row.status.value, "import": True})
    session.commit()
    return [r.id for r in rows]


def create_content_items(*, session: Session, items: Iterable[NewContent]) -> list[uuid.UUID]:
    """Insert content items (version 1 each) in one transaction."""
    rows = [ContentItem(id=i.id or uuid.uuid4(), course_id=i.course_id, kind=i.kind, title=i.title, body=i.body,
                        planned_week=i.planned_week, version=1, accessibility={}, metadata_=dict(i.metadata))
            for i in items]
    session.add_all(rows)
    session.flush()
    for row in rows:
        session.add(ContentVersion(content_id=row.id, version=1, title=row.title, body=row.body, accessibility={}))
        emit(session, event_type="content.created", course_id=row.course_id,
             payload={"content_id": str(row.id), "kind": row.kind.value, "planned_week": row.planned_week,
                      "import": True})
    session.commit()
    return [r.id for r in rows]


def searchable_content(*, session: Session, content_ids: Iterable[str]) -> dict[str, SearchableContent]:
    """The current text of the items among ``content_ids`` that still exist (content id → item); what the search
    indexer (``recommender.api.sync_search_index``) reads after ``lms.content.events``. Ids that are not UUIDs
    are left out like deleted ones."""
    wanted = []
    for content_id in content_ids:
        try:
            wanted.append(uuid.UUID(str(content_id)))
        except ValueError:
            continue
    found: dict[str, SearchableContent] = {}
    for start in range(0, len(wanted), 500):
        for row in session.scalars(select(ContentItem).where(ContentItem.id.in_(wanted[start:start + 500]))):
            found[str(row.id)] = SearchableContent(content_id=str(row.id), course_id=str(row.course_id),
                                                   title=row.title, body=row.body, kind=row.kind.value)
    return found


def count_content(*, session: Session) -> int:
    """How many content items the platform holds (every one is searchable): the search indexer compares it with an
    empty index to tell a lost index from a platform without content."""
    return int(session.scalar(select(func.count()).select_from(ContentItem)) or 0)


def content_ids(*, session: Session) -> set[str]:
    """The ids of every content item the platform holds: the search indexer checks an index it opened non-empty
    against them (an index folder removed and refilled with other items, e.g. the demo's catalog)."""
    return {str(content_id) for content_id in session.scalars(select(ContentItem.id))}


__all__ += ["content_ids", "count_content", "count_events", "searchable_content"]


def create_assessments(*, session: Session, assessments: Iterable[NewAssessment]) -> list[uuid.UUID]:
    """Insert assessments without questions (e.g. OULAD TMA/CMA/Exam rows) in one transaction."""
    rows = [Assessment(id=a.id or uuid.uuid4(), course_id=a.course_id, title=a.title, kind=a.kind, weight=a.weight,
                       metadata_=dict(a.metadata)) for a in assessments]
    session.add_all(rows)
    for row in rows:
        emit(session, event_type="assessment.created", course_id=row.course_id,
             payload={"assessment_id": str(row.id), "kind": row.kind.value, "import": True})
    session.commit()
    return [r.id for r in rows]


def record_submissions(*, session: Session, submissions: Iterable[NewSubmission],
                       graded_by: GradedBy = GradedBy.instructor) -> list[uuid.UUID]:
    """Insert already-graded submissions (``score`` set) or ungraded ones (``score=None`` → queued)."""
    course_of: dict[uuid.UUID, uuid.UUID] = {}
    submissions = list(submissions)
    # Each is the learner's next attempt (one row per assessment, learner and attempt).
    last = _assessments.last_attempts(session, {s.assessment_id for s in submissions})
    ids = []
    for s in submissions:
        if s.assessment_id not in course_of:
            course_of[s.assessment_id] = get_or_not_found(session, Assessment, s.assessment_id, "Assessment").course_id
        if s.score is not None and not 0 <= s.score <= s.max_score:
            raise InvalidInput(f"score {s.score} must be within 0..{s.max_score}")
        status = SubmissionStatus.graded if s.score is not None else SubmissionStatus.queued_for_ai_grading
        attempt = last[s.assessment_id, s.user_id] = last.get((s.assessment_id, s.user_id), 0) + 1
        row = Submission(assessment_id=s.assessment_id, user_id=s.user_id, course_id=course_of[s.assessment_id],
                         answers=dict(s.answers), status=status, attempt=attempt, metadata_=dict(s.metadata))
        session.add(row)
        session.flush()
        if s.score is not None:
            session.add(Grade(submission_id=row.id, score=s.score, max_score=s.max_score, graded_by=graded_by,
                              is_final=True, details={"import": True}))
        emit(session, event_type="submission.created", user_id=s.user_id, course_id=row.course_id,
             payload={"submission_id": str(row.id), "assessment_id": str(s.assessment_id),
                      "status": status.value, "score": s.score, "max_score": s.max_score, "import": True})
        ids.append(row.id)
    session.commit()
    return ids


def pending_essays(*, session: Session, limit: int = 100) -> list[PendingEssay]:
    """Essay answers waiting for an AI grade, oldest submission first."""
    return [PendingEssay(**row) for row in _assessments.pending_essays(session=session, limit=limit)]


def record_ai_grade(*, session: Session, submission_id: uuid.UUID, score: float, max_score: float | None = None,
                    feedback: str = "", model_name: str | None = None, model_version: str | None = None,
                    confidence: float | None = None, details: dict[str, Any] | None = None) -> uuid.UUID:
    """Store an AI-suggested grade. The learner does not see it; staff accept or override it with
    ``PUT /api/v1/submissions/{id}/grade``. Emits ``grade.suggested``."""
    info = {"model_name": model_name, "model_version": model_version, "confidence": confidence, **(details or {})}
    grade = _assessments.record_ai_grade(session=session, submission_id=submission_id, score=score,
                                         max_score=max_score, feedback=feedback, details=info)
    return grade.id


# --- AI-assisted essay grading (grading_nlp's worker and training read and write through these) ----------
GradingTask = _grading_review.GradingTask
EssayToGrade = _grading_review.EssayToGrade
EssaySuggestion = _grading_review.EssaySuggestion
LabelledEssay = _grading_review.LabelledEssay
__all__ += ["EssaySuggestion", "EssayToGrade", "GradingTask", "LabelledEssay", "claim_grading_tasks",
            "create_essay_assignment",
            "grading_agreement", "grading_job_state", "labelled_essays", "record_ai_suggestion",
            "record_grading_failure",
            "record_manual_grading", "renew_grading_leases"]


def claim_grading_tasks(*, session: Session, lease_seconds: float, limit: int = 20,
                        now: datetime | None = None) -> list[GradingTask]:
    """Claim due AI grading jobs of queued essay submissions (creating missing jobs first), oldest first.

    Each claim counts an attempt, leases the job for ``lease_seconds`` (the worker passes
    ``Settings.grading_lease_seconds``) and carries a new ``claim_token``. Renew the leases with
    :func:`renew_grading_leases` while grading; finish with :func:`record_ai_suggestion`,
    :func:`record_manual_grading` or :func:`record_grading_failure`, passing the token. A job whose worker died
    (stopped renewing) is claimable again when its lease runs out. Each essay names its ASAP ``prompt_id``
    (question rubric ``essay_set``, else assessment ``metadata.essay_prompt``; None means grade by hand)."""
    return _grading_review.claim_grading_tasks(session=session, limit=limit, now=now, lease_seconds=lease_seconds)


def renew_grading_leases(*, session: Session, claim_tokens: Collection[uuid.UUID], lease_seconds: float,
                         now: datetime | None = None) -> set[uuid.UUID]:
    """Heartbeat of a grading worker: extend to ``now + lease_seconds`` the lease of every job still claimed
    under one of ``claim_tokens`` (in one UPDATE). Returns the tokens still held; a token missing from it lost
    its job (finished, or taken over by another worker after its lease ran out): stop working on it."""
    return _grading_review.renew_leases(session=session, claim_tokens=claim_tokens, lease_seconds=lease_seconds,
                                        now=now)


def grading_job_state(*, session: Session, submission_id: uuid.UUID) -> str | None:
    """The state of a submission's grading job (None: none yet): after a dropped result, ``staff_graded`` means
    staff graded the submission meanwhile, any other state that another worker took the claim over."""
    state = _grading_review.grading_job_state(session=session, submission_id=submission_id)
    return state.value if state is not None else None


def record_ai_suggestion(*, session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID,
                         essays: list[EssaySuggestion]) -> uuid.UUID | None:
    """Store the AI suggestion (score, interval, confidence, reasons, model version per essay) of a claimed
    submission; staff then accept or override it. Returns the AI grade's id, or None when ``claim_token`` no
    longer holds the job: another worker took it over, or staff graded the submission meanwhile (see
    :func:`grading_job_state`), so this late result is dropped (logged), never stored over their work."""
    return _grading_review.record_ai_suggestion(session=session, submission_id=submission_id,
                                                claim_token=claim_token, essays=essays)


def record_manual_grading(*, session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID,
                          reasons: list[str]) -> bool:
    """Close a claimed job without an AI grade; staff see the submission as "needs manual grading" with reasons.
    False when ``claim_token`` no longer holds the job or staff graded it meanwhile (dropped and logged, like a
    late suggestion)."""
    return _grading_review.record_manual_grading(session=session, submission_id=submission_id,
                                                 claim_token=claim_token, reasons=reasons)


def record_grading_failure(*, session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID, error: str,
                           now: datetime | None = None, max_attempts: int = _grading_review.MAX_ATTEMPTS,
                           backoff_seconds: float = _grading_review.BACKOFF_SECONDS) -> str | None:
    """A grading try failed: store the error and retry with exponential backoff; after ``max_attempts`` tries
    the submission needs manual grading. The submission stays queued either way. Returns the job state, or None
    when ``claim_token`` no longer holds the job (dropped and logged: the new claimant's try is the one that
    counts) or staff graded the submission meanwhile (the job is closed, not retried)."""
    state = _grading_review.record_grading_failure(session=session, submission_id=submission_id,
                                                   claim_token=claim_token, error=error, now=now,
                                                   max_attempts=max_attempts, backoff_seconds=backoff_seconds)
    return state.value if state is not None else None


def create_essay_assignment(*, session: Session, course_id: uuid.UUID, title: str, prompt: str,
                            essay_prompt: int | None, criteria: list[dict[str, Any]]) -> tuple[uuid.UUID, uuid.UUID]:
    """An assignment with one essay question (rubric ``criteria`` of name/description/points) graded by the AI
    model of ASAP prompt ``essay_prompt`` (None: staff grade by hand). Returns (assessment id, question id)."""
    from platform_api._schemas import AssessmentCreate, EssayQuestionCreate

    question = _assessments.create_question(session=session, actor=None, data=EssayQuestionCreate(
        course_id=course_id, prompt=prompt, rubric={"criteria": criteria, "essay_set": essay_prompt}))
    assessment = _assessments.create_assessment(session=session, actor=None, data=AssessmentCreate(
        course_id=course_id, title=title, kind="assignment", question_ids=[question.id],
        metadata={"essay_prompt": essay_prompt} if essay_prompt is not None else {}))
    return assessment.id, question.id


def labelled_essays(*, session: Session, course_id: uuid.UUID | None = None,
                    prompt_id: int | None = None) -> list[LabelledEssay]:
    """Every staff decision (accept or override) on a single-essay submission with an ASAP prompt, oldest first:
    essay text, prompt, final score and AI score on the prompt's scale (labels for the next training run)."""
    return _grading_review.labelled_examples(session=session, course_id=course_id, prompt_id=prompt_id)


def grading_agreement(*, session: Session, course_id: uuid.UUID | None = None,
                      window: int = _grading_review.AGREEMENT_WINDOW) -> dict[str, Any]:
    """Rolling AI-vs-staff quadratic weighted kappa over the last ``window`` decisions per prompt (and pooled)."""
    return _grading_review.agreement(session=session, actor=None, course_id=course_id,
                                     window=window).model_dump()


def emit_event(*, session: Session, event_type: str, user_id: str | uuid.UUID | None = None,
               course_id: str | uuid.UUID | None = None, payload: dict[str, Any] | None = None,
               source_service: str = "platform_api") -> Event:
    """Write an event to the outbox and commit (e.g. ``intervention.alert_raised`` from the ML loop)."""
    event = emit(session, event_type=event_type, user_id=user_id, course_id=course_id, payload=payload,
                 source_service=source_service)
    session.commit()
    return event


def read_events(*, session: Session, topic: Topic | str | None = None, after_id: int = 0,
                limit: int = 1000, imported: bool = True) -> list[tuple[int, Event]]:
    """Events from the outbox in commit order, as ``(position, event)``; pass the last position back as
    ``after_id`` to read on. Lets batch jobs (feature building) replay the stream without a broker.
    ``imported=False`` leaves out rows of data-set imports (``payload.import``), in the query."""
    from platform_api._models import OutboxEvent

    statement = select(OutboxEvent.id, OutboxEvent.envelope).where(OutboxEvent.id > after_id)
    if topic is not None:
        statement = statement.where(OutboxEvent.topic == str(topic))
    if not imported:
        statement = statement.where(OutboxEvent.envelope["payload"]["import"].as_boolean().is_not(True))
    rows = session.execute(statement.order_by(OutboxEvent.id).limit(limit)).all()
    return [(row.id, Event.model_validate(row.envelope)) for row in rows]


def count_events(*, session: Session, topic: Topic | str | None = None, up_to: int | None = None) -> int:
    """How many events (of ``topic``) the outbox holds at positions ``<= up_to``: a consumer that keeps a cursor
    counts again to notice a row that committed after it had read past its position (or a recreated database)."""
    from platform_api._models import OutboxEvent

    statement = select(func.count()).select_from(OutboxEvent)
    if topic is not None:
        statement = statement.where(OutboxEvent.topic == str(topic))
    if up_to is not None:
        statement = statement.where(OutboxEvent.id <= up_to)
    return int(session.scalar(statement) or 0)


def subscribe(app, topic: Topic | str, handler: Callable[[Event], None]) -> Callable[[], None]:
    """Receive ``app``'s events in process (``"*"`` for every topic). Returns an unsubscribe function."""
    bus: EventBus = app.state.bus
    return bus.subscribe(topic, handler)


def relay_pending(settings: Settings | None = None, *, bus: EventBus | None = None) -> int:
    """Publish every pending outbox event once (to NATS when configured, else to ``bus``); returns the count."""
    settings = settings or get_settings()
    engine = make_engine(settings.sqlalchemy_url)
    publisher = (NatsPublisher(settings.nats_url, duplicate_window_s=settings.nats_duplicate_window_s)
                 if settings.nats_url else (bus or EventBus()))

    async def _run() -> int:
        try:
            return await OutboxRelay(make_sessionmaker(engine), publisher).run_once()
        finally:
            await publisher.close()

    try:
        return asyncio.run(_run())
    finally:
        engine.dispose()


def enrollment_status_of(session: Session, *, user_id: uuid.UUID, course_id: uuid.UUID) -> EnrollmentStatus | None:
    """The status of a user's enrollment in a course, or None when not enrolled."""
    return session.scalar(select(Enrollment.status).where(Enrollment.user_id == user_id,
                                                          Enrollment.course_id == course_id))


def _insert_missing(session: Session, table, rows: list[dict[str, Any]]) -> int:
    """INSERT … ON CONFLICT DO NOTHING of ``rows`` (SQLAlchemy core, one executemany); returns rows inserted."""
    if not rows:
        return 0
    name = session.get_bind().dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - the platform runs on SQLite or PostgreSQL only
        raise InvalidInput(f"bulk import supports SQLite and PostgreSQL, not {name}")
    # One compiled statement and per-column bind processors, then the driver's executemany: SQLAlchemy's
    # per-row parameter building cost ~50 µs a row (a minute for OULAD's clicks).
    keys = list(rows[0])
    dialect = session.get_bind().dialect
    compiled = insert(table).on_conflict_do_nothing().compile(dialect=dialect, column_keys=keys)
    process = {key: table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys}
    names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
    order = [(name, compiled.binds[name].key, process.get(compiled.binds[name].key)) for name in names]
    order = [(name, key, _memo_last(fn) if fn else None) for name, key, fn in order]
    if compiled.positional:
        params = [tuple(fn(row[key]) if fn else row[key] for _, key, fn in order) for row in rows]
    else:
        params = [{name: fn(row[key]) if fn else row[key] for name, key, fn in order} for row in rows]
    result = session.connection().exec_driver_sql(compiled.string, params)
    return max(int(result.rowcount or 0), 0)


def _memo_last(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` remembering its last input object: a batch shares one ``now`` per timestamp column."""
    last: list[Any] = [object(), None]

    def run(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return run


def _require_ids(kind: str, records: list) -> None:
    if any(getattr(record, "id", None) is None for record in records):
        raise InvalidInput(f"import_records needs a stable id on every {kind} (e.g. uuid5 of the source key)")


def import_records(*, session: Session, users: Iterable[NewUser] = (), courses: Iterable[NewCourse] = (),
                   enrollments: Iterable[NewEnrollment] = (), content: Iterable[NewContent] = (),
                   assessments: Iterable[NewAssessment] = (), submissions: Iterable[NewSubmission] = (),
                   events: Iterable[Event | dict[str, Any]] = (), publish_events: bool = False) -> dict[str, int]:
    """Bulk insert-or-skip for importing a whole institution (OULAD: ~1M rows), in one transaction.

    Unlike ``create_*`` (ORM, one event per row through ``emit``), rows go in with SQLAlchemy core
    ``INSERT … ON CONFLICT DO NOTHING`` executemany: every record must carry a stable ``id`` (e.g. uuid5 of
    its source key), and a record whose id (or unique key: email, user+course) exists is skipped, so
    re-running an import adds nothing. Content items get their version-1 row; a submission with a score gets
    its final grade (``graded_by`` instructor). Users are created without passwords.

    ``events`` are outbox rows (``Event`` or its JSON envelope dict, e.g. ``resource_click`` activity on
    ``lms.analytics.events``), skipped by ``event_id`` when present. History is imported as already
    published (``publish_events=False``): ``read_events`` replays it, but the relay does not push a million
    historical events to live subscribers. Returns the number of rows inserted per kind.
    """
    from platform_api._models import OutboxEvent
    from platform_api._models import utcnow as _now

    now = _now()
    counts: dict[str, int] = {}
    users, courses, enrollments = list(users), list(courses), list(enrollments)
    content, assessments, submissions = list(content), list(assessments), list(submissions)
    for kind, records in (("users", users), ("courses", courses), ("enrollments", enrollments),
                          ("content", content), ("assessments", assessments), ("submissions", submissions)):
        _require_ids(kind, records)
    counts["users"] = _insert_missing(session, User.__table__, [
        {"id": u.id, "email": u.email.strip().lower(), "name": u.name, "role": u.role, "status": UserStatus.active,
         "password_hash": None, "metadata": dict(u.metadata), "created_at": now, "updated_at": now}
        for u in users])
    counts["courses"] = _insert_missing(session, Course.__table__, [
        {"id": c.id, "title": c.title, "description": c.description, "instructor_id": c.instructor_id,
         "created_by": c.instructor_id, "status": c.status, "visibility": c.visibility,
         "enrollment_type": c.enrollment_type, "duration_weeks": c.duration_weeks, "credit_hours": c.credit_hours,
         "starts_at": c.starts_at,
         "metadata": dict(c.metadata), "created_at": now, "updated_at": now} for c in courses])
    bad = next((e for e in enrollments if not 0 <= e.progress <= 100), None)
    if bad is not None:
        raise InvalidInput(f"progress {bad.progress} of user {bad.user_id} must be within 0..100")
    counts["enrollments"] = _insert_missing(session, Enrollment.__table__, [
        {"id": e.id, "user_id": e.user_id, "course_id": e.course_id, "status": e.status, "progress": e.progress,
         "started_at": e.started_at or now, "completed_at": e.completed_at, "created_at": now}
        for e in enrollments])
    counts["content"] = _insert_missing(session, ContentItem.__table__, [
        {"id": i.id, "course_id": i.course_id, "kind": i.kind, "title": i.title, "body": i.body, "version": 1,
         "position": 0, "planned_week": i.planned_week, "accessibility": {}, "metadata": dict(i.metadata),
         "created_at": now, "updated_at": now}
        for i in content])
    _insert_missing(session, ContentVersion.__table__, [
        {"id": uuid.uuid5(i.id, "version-1"), "content_id": i.id, "version": 1, "title": i.title, "body": i.body,
         "accessibility": {}, "created_at": now} for i in content])
    counts["assessments"] = _insert_missing(session, Assessment.__table__, [
        {"id": a.id, "course_id": a.course_id, "title": a.title, "kind": a.kind, "weight": a.weight,
         "due_at": a.due_at, "metadata": dict(a.metadata), "created_at": now} for a in assessments])
    missing_course = [s for s in submissions if s.course_id is None]
    if missing_course:
        course_of = dict(session.execute(select(Assessment.id, Assessment.course_id).where(
            Assessment.id.in_({s.assessment_id for s in missing_course}))).all())
    attempts: dict[uuid.UUID, int] = {}
    if submissions:
        # A learner's second submission to an assessment is attempt 2 (one row per assessment, learner and
        # attempt). Rows already imported (same id) are skipped by the insert whatever number they get here.
        last = _assessments.last_attempts(session, {s.assessment_id for s in submissions})
        for s in submissions:
            attempts[s.id] = last[s.assessment_id, s.user_id] = last.get((s.assessment_id, s.user_id), 0) + 1
    for s in submissions:
        if s.score is not None and not 0 <= s.score <= s.max_score:
            raise InvalidInput(f"score {s.score} must be within 0..{s.max_score}")
    counts["submissions"] = _insert_missing(session, Submission.__table__, [
        {"id": s.id, "assessment_id": s.assessment_id, "user_id": s.user_id,
         "course_id": s.course_id or course_of[s.assessment_id], "answers": dict(s.answers),
         "status": SubmissionStatus.graded if s.score is not None else SubmissionStatus.queued_for_ai_grading,
         "attempt": attempts[s.id], "metadata": dict(s.metadata), "submitted_at": s.submitted_at or now,
         "updated_at": now}
        for s in submissions])
    _insert_missing(session, Grade.__table__, [
        {"id": uuid.uuid5(s.id, "grade"), "submission_id": s.id, "score": s.score, "max_score": s.max_score,
         "graded_by": GradedBy.instructor, "grader_id": None, "is_final": True, "feedback": "",
         "details": {"import": True}, "created_at": s.submitted_at or now} for s in submissions if s.score is not None])
    outbox, checked = [], False
    for event in events:
        envelope = event.model_dump(mode="json") if isinstance(event, Event) else event
        if not checked and not isinstance(event, Event):
            # Dict envelopes are trusted (building a million Events costs a minute); the first of each call
            # is validated, so a producer with a malformed shape fails here and not in a consumer.
            Event.model_validate(envelope)
            checked = True
        outbox.append({"event_id": uuid.UUID(str(envelope["event_id"])), "topic": str(topic_for(envelope["event_type"])),
                       "event_type": envelope["event_type"], "user_id": envelope.get("user_id"),
                       "course_id": envelope.get("course_id"), "envelope": envelope, "created_at": now,
                       "published_at": None if publish_events else now, "attempts": 0})
    counts["events"] = _insert_missing(session, OutboxEvent.__table__, outbox)
    session.commit()
    return counts


# --------------------------------------------------------------------------- at-risk alerts (interventions job)
__all__ += ["active_enrollments", "alert_outcome_labels", "courses_with_content", "latest_alerts",
            "next_due_assessments", "record_alerts", "remedial_content", "linked_oulad_records", "grant_course_role"]


def active_enrollments(*, session: Session, course_id: uuid.UUID | None = None,
                       include_completed: bool = False) -> list[ScoringTarget]:
    """Enrollments the interventions job scores: ``enrolled`` (plus ``completed`` with ``include_completed``,
    for replaying finished presentations such as imported OULAD history), of active users in courses that are
    not archived, with their model-side keys (``metadata.id_student`` / ``metadata.presentation``; None when
    the enrollment is not linked to the model's ids)."""
    from platform_api import _alerts

    statuses = [EnrollmentStatus.enrolled, *([EnrollmentStatus.completed] if include_completed else [])]
    return _alerts.scoring_targets(session=session, course_id=course_id, statuses=statuses)


def linked_oulad_records(*, session: Session, id_students: Iterable[int],
                         presentation: str) -> tuple[dict[int, uuid.UUID], uuid.UUID | None]:
    """Users already linked to these OULAD students (``metadata.id_student``) and the course already linked to
    ``presentation`` (``metadata.presentation``), e.g. from ``learnloop data import oulad``: reuse them rather
    than creating the same student twice."""
    from platform_api import _alerts

    return _alerts.linked_records(session=session, id_students=id_students, presentation=presentation)


def grant_course_role(*, session: Session, user_id: uuid.UUID, course_id: uuid.UUID,
                      role_name: str = "instructor") -> bool:
    """Give ``user_id`` a course-scoped role (trusted caller); False when they already hold it."""
    from platform_api._schemas import RoleGrantCreate
    from platform_api.data import ScopeType

    try:
        _users.assign_role(session=session, actor=None, user_id=user_id, data=RoleGrantCreate(
            role_name=role_name, scope_type=ScopeType.course, scope_id=str(course_id)))
    except Conflict:
        session.rollback()
        return False
    return True


def latest_alerts(*, session: Session, enrollment_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, PriorAlert]:
    """The newest alert of each given enrollment that has one (what the job's cooldown compares against)."""
    from platform_api import _alerts

    return _alerts.latest_alerts(session=session, enrollment_ids=enrollment_ids)


def record_alerts(*, session: Session, alerts: Iterable[NewAlert], now: datetime | None = None) -> list[uuid.UUID]:
    """Store at-risk alerts (status ``open``) in one transaction; emits ``enrollment.alert_raised`` for each."""
    from platform_api import _alerts

    return _alerts.record_alerts(session=session, alerts=alerts, now=now)


def next_due_assessments(*, session: Session, course_ids: Iterable[uuid.UUID],
                         now: datetime | None = None) -> dict[uuid.UUID, dict[str, Any]]:
    """Per course, the next assessment due after ``now``: ``{"assessment_id", "title", "due_at"}``."""
    from platform_api import _alerts

    return _alerts.next_due_assessments(session=session, course_ids=course_ids, now=now)


def courses_with_content(*, session: Session, course_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The courses among ``course_ids`` holding at least one content item."""
    from platform_api import _alerts

    return _alerts.courses_with_content(session=session, course_ids=course_ids)


def remedial_content(*, session: Session, user_id: uuid.UUID, course_id: uuid.UUID, backend: Callable | None,
                     limit: int = 3) -> list[dict[str, Any]]:
    """Content to suggest to a struggling learner: what the course plan puts before the assessment due next that
    they have not opened (the first slots), then the recommender's next items (``backend`` =
    ``recommender.api.recommend``) or the platform's popularity fallback, as ``[{"item_id", "title", "reason"}]``
    (logged as ``recommendations.served`` like any served list)."""
    from platform_api import _recommendations

    served = _recommendations.recommendations(session=session, actor=None, backend=backend, user_id=user_id,
                                              course_id=course_id, limit=limit, at_risk=True)
    return [{"item_id": item.item_id, "title": item.title, "reason": item.reason} for item in served.items]


def alert_outcome_labels(*, session: Session, since: datetime | None = None) -> list[AlertLabel]:
    """Resolved alerts as labels for the next training run: the learner's and course's model keys
    (``id_student``, ``presentation``), the risk and model version at alert time, and the staff verdict
    (``action_taken`` / ``dismissed`` / ``not_useful`` and which action)."""
    from platform_api import _alerts

    return _alerts.outcome_labels(session=session, since=since)
