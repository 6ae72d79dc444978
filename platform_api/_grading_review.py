"""AI-assisted essay grading in the platform: the grading job queue, the instructor's review queue, decisions
and AI-vs-instructor agreement.

* **Jobs.** Every submission ``queued_for_ai_grading`` gets a ``grading_jobs`` row the first time a worker looks
  (``grading_nlp``'s worker, through ``platform_api.api``). A worker *claims* due jobs (attempt counted, lease
  taken), grades each essay and records either a suggestion or "needs manual grading" with the reason. A failed
  try stores the error and is retried with exponential backoff; after ``MAX_ATTEMPTS`` the job is closed as
  "needs manual grading". The submission itself never leaves ``queued_for_ai_grading``/``ai_suggested`` until
  staff decide, so it is never lost and always in the course's queue.
* **Leases.** A claim is short (``Settings.grading_lease_seconds``, 60 s) and the worker renews it while it grades
  (:func:`renew_leases`), so a killed worker's jobs are claimable again within one lease and a slow one keeps
  its own. Each claim gets a new ``claim_token``; renewing and recording a result only match the row while it
  still carries the caller's token and is pending, so a worker whose lease ran out and whose job another worker
  took has its late result dropped (logged, never stored over the new claimant's work).
* **Staff first.** Staff may grade a submission by hand while the AI grades it: the staff grade closes a pending
  job as ``staff_graded`` (claim token cleared) in the transaction that writes it, so the worker's late result
  (suggestion, "needs manual grading" or failure) is dropped, neither stored nor retried. Both sides lock the job
  row, then the submission, so they wait for each other and neither overwrites the other's commit.
* **Prompts.** An essay question is graded by the model of its ASAP prompt: the question rubric's ``essay_set``,
  else the assessment's ``metadata.essay_prompt``. Without either, the essay needs manual grading.
* **Scale.** The AI scores on the prompt's own scale (e.g. 0–3); the suggestion in assessment points is
  ``score × question points / prompt maximum`` (identity when the rubric's points equal the prompt maximum).
* **Decisions.** Accept, override (override of an AI suggestion needs a comment the learner reads) or
  ``PUT /submissions/{id}/grade``. The final one is a labelled example (:func:`labelled_examples`); each is a
  line in the prediction log that ``pipelines.monitoring`` reads (model ``essay_grader_p<prompt>``, ``output`` =
  AI score, ``label`` = staff score, keyed by ``entity.submission_id``: the reader keeps a submission's latest
  line), so QWK drift of the graders counts each essay once, with its final grade; :func:`agreement` is the
  rolling QWK the queue shows.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput
from learnloop.settings import Settings
from platform_api import _assessments, _audit, policy
from platform_api._db import get_or_not_found
from platform_api._models import (
    Assessment,
    AssessmentQuestion,
    Course,
    Grade,
    GradingJob,
    GradingJobState,
    Question,
    Submission,
    User,
)
from platform_api._outbox import emit
from platform_api._schemas import (
    AiGradeAccept,
    AiGradeOverride,
    GradeUpdate,
    GradingAgreementPublic,
    GradingQueueEssayPublic,
    GradingQueueItemPublic,
    GradingQueuePublic,
    PromptAgreementPublic,
    ReviewState,
    SubmissionPublic,
)
from platform_api.data import GradedBy, QuestionKind, ScopeType, SubmissionStatus
from platform_api.policy import Permission, Principal, Scope

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 30.0  # 30 s, 60 s, 2 min, 4 min between tries
AGREEMENT_WINDOW = 50  # decisions per prompt in the rolling QWK
QUEUE_STATUSES = (SubmissionStatus.queued_for_ai_grading, SubmissionStatus.ai_suggested)
PREDICTION_LOG_DIR = ("predictions", "essay_grader")


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# --- grading jobs (the worker's side) ---------------------------------------------------------------
@dataclass(frozen=True)
class EssayToGrade:
    """One essay answer of a claimed submission, with the ASAP prompt whose model grades it (None: no model)."""

    question_id: uuid.UUID
    question_prompt: str
    essay: str
    prompt_id: int | None
    points: float


@dataclass(frozen=True)
class GradingTask:
    """A claimed grading job: grade every essay, then call ``record_ai_suggestion``, ``record_manual_grading``
    or ``record_grading_failure`` with ``submission_id`` and ``claim_token`` (renew the lease with
    ``renew_leases`` meanwhile)."""

    submission_id: uuid.UUID
    course_id: uuid.UUID
    assessment_id: uuid.UUID
    attempt: int
    claim_token: uuid.UUID
    essays: list[EssayToGrade] = field(default_factory=list)


@dataclass(frozen=True)
class EssaySuggestion:
    """The AI's answer for one essay (``score`` on the prompt's scale), as the worker hands it over."""

    question_id: uuid.UUID
    prompt_id: int
    score: int
    interval: tuple[int, int] | None
    confidence: float
    needs_review: bool
    reasons: list[str]
    model_version: str | None
    score_range: tuple[int, int]


def _parse_prompt_id(value: Any) -> int | None:
    """A stored prompt reference as an id: an int or a string of ASCII digits; anything else (``"²"`` passes
    ``str.isdigit`` but not ``int``) links no prompt."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
    return None


def essay_prompt_of(question: Question, assessment: Assessment) -> int | None:
    """The ASAP prompt id grading ``question``: rubric ``essay_set``, else assessment ``metadata.essay_prompt``.
    An unreadable value links no prompt: the essay needs manual grading (the worker says why)."""
    for value in ((question.rubric or {}).get("essay_set"), (assessment.metadata_ or {}).get("essay_prompt")):
        found = _parse_prompt_id(value)
        if found is not None:
            return found
    return None


def enqueue_missing_jobs(*, session: Session, now: datetime | None = None) -> int:
    """Create the job of every queued essay submission that has none yet (idempotent); returns how many."""
    missing = session.execute(
        select(Submission.id, Submission.course_id).outerjoin(GradingJob, GradingJob.submission_id == Submission.id)
        .where(Submission.status == SubmissionStatus.queued_for_ai_grading, GradingJob.id.is_(None))).all()
    created = 0
    for submission_id, course_id in missing:
        try:
            with session.begin_nested():
                session.add(GradingJob(submission_id=submission_id, course_id=course_id, attempts=0, reasons=[],
                                       next_attempt_at=_now(now), state=GradingJobState.pending))
            created += 1
        except IntegrityError:
            pass  # another worker created it in the meantime
    session.commit()
    return created


def _close_staff_graded(session: Session, now: datetime) -> int:
    """End the pending jobs of submissions staff have graded (``staff_graded``): a job created while a staff grade
    committed (``enqueue_missing_jobs`` reads, then inserts), or left from before staff grades closed jobs, is
    never claimed and would read as an essay waiting for ever. Returns how many."""
    closed = session.execute(
        update(GradingJob).where(
            GradingJob.state == GradingJobState.pending,
            GradingJob.submission_id.in_(select(Submission.id).where(Submission.status == SubmissionStatus.graded)))
        .values(state=GradingJobState.staff_graded, leased_until=None, claim_token=None, updated_at=now,
                reasons=[_assessments.STAFF_GRADED_REASON])
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    return closed


def claim_grading_tasks(*, session: Session, lease_seconds: float, limit: int = 20,
                        now: datetime | None = None) -> list[GradingTask]:
    """Due jobs of queued submissions, oldest first, each claimed for ``lease_seconds`` (attempt counted) under
    a new claim token."""
    now = _now(now)
    enqueue_missing_jobs(session=session, now=now)
    _close_staff_graded(session, now)
    due = session.scalars(
        select(GradingJob).join(Submission, Submission.id == GradingJob.submission_id)
        .where(GradingJob.state == GradingJobState.pending, GradingJob.next_attempt_at <= now,
               Submission.status == SubmissionStatus.queued_for_ai_grading,
               or_(GradingJob.leased_until.is_(None), GradingJob.leased_until < now))
        .order_by(GradingJob.next_attempt_at, GradingJob.created_at).limit(limit)).all()
    tasks = []
    for job in due:
        # The conditional UPDATE is the claim: only one worker's UPDATE matches the unleased row.
        claim_token = uuid.uuid4()
        claimed = session.execute(
            update(GradingJob).where(GradingJob.id == job.id, GradingJob.state == GradingJobState.pending,
                                     or_(GradingJob.leased_until.is_(None), GradingJob.leased_until < now))
            .values(leased_until=now + timedelta(seconds=lease_seconds), attempts=GradingJob.attempts + 1,
                    claim_token=claim_token, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
        session.commit()
        if claimed != 1:
            continue
        session.refresh(job)
        submission = session.get(Submission, job.submission_id)
        assessment = session.get(Assessment, submission.assessment_id)
        essays = [EssayToGrade(question_id=q.id, question_prompt=q.prompt, essay=str(submission.answers.get(
                      str(q.id), "")), prompt_id=essay_prompt_of(q, assessment), points=q.points)
                  for q in _assessments._questions_of(session, assessment.id) if q.kind is QuestionKind.essay]
        tasks.append(GradingTask(submission_id=submission.id, course_id=submission.course_id,
                                 assessment_id=assessment.id, attempt=job.attempts, claim_token=claim_token,
                                 essays=essays))
    return tasks


def renew_leases(*, session: Session, claim_tokens: Collection[uuid.UUID], lease_seconds: float,
                 now: datetime | None = None) -> set[uuid.UUID]:
    """Extend the lease of every pending job still claimed under one of ``claim_tokens`` to ``now +
    lease_seconds``; returns the tokens still held (a missing one: the job was finished or taken over)."""
    if not claim_tokens:
        return set()
    now = _now(now)
    # The token alone decides: a claim replaces it, so a match means nobody took the job over, even when the
    # lease ran out a moment ago (renewing it then loses nobody's work). A reclaim racing this UPDATE waits for
    # its row lock and finds the lease renewed; the one that commits first wins.
    held = session.scalars(
        update(GradingJob).where(GradingJob.claim_token.in_(list(claim_tokens)),
                                 GradingJob.state == GradingJobState.pending)
        .values(leased_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(GradingJob.claim_token).execution_options(synchronize_session=False)).all()
    session.commit()
    return set(held)


def _job(session: Session, submission_id: uuid.UUID) -> GradingJob:
    job = session.scalar(select(GradingJob).where(GradingJob.submission_id == submission_id))
    if job is None:
        raise Conflict(f"Submission {submission_id} has no grading job; claim it with claim_grading_tasks first")
    return job


def _release_claim(session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID,
                   result: str) -> GradingJob | None:
    """End the caller's claim on the job of ``submission_id`` in the current transaction and return the job, or
    None (logged, transaction rolled back) when the job no longer carries ``claim_token`` or is finished.

    The conditional UPDATE comes first so that the row stays locked (PostgreSQL) or the database write-locked
    (SQLite) until the caller commits the result: a reclaim cannot slip in between the check and the write."""
    released = session.execute(
        update(GradingJob).where(GradingJob.submission_id == submission_id,
                                 GradingJob.claim_token == claim_token,
                                 GradingJob.state == GradingJobState.pending)
        .values(leased_until=None, claim_token=None, updated_at=_now(None))
        .execution_options(synchronize_session=False)).rowcount
    if released != 1:
        session.rollback()
        job = _job(session, submission_id)
        log.warning("Dropped the %s of submission %s: claim %s no longer holds its grading job (its lease ran out "
                    "and another worker claimed it, attempt %d, or the job is %s already)", result, submission_id,
                    claim_token, job.attempts, job.state.value)
        return None
    return session.scalar(select(GradingJob).where(GradingJob.submission_id == submission_id)
                          .execution_options(populate_existing=True))


def _graded_meanwhile(session: Session, job: GradingJob, submission_id: uuid.UUID, result: str) -> bool:
    """Whether staff graded the submission while its claim was out (a grade written without closing the job: no
    job yet then, or an API from before ``staff_graded``): then close the job as ``staff_graded`` and commit, so
    the caller drops its result instead of storing or retrying it. Called with the job row locked (after
    :func:`_release_claim`); locks the submission until the caller commits."""
    status = session.scalar(select(Submission.status).where(Submission.id == submission_id).with_for_update())
    if status is not SubmissionStatus.graded:
        return False
    job.state, job.reasons = GradingJobState.staff_graded, [_assessments.STAFF_GRADED_REASON]
    session.commit()
    log.info("Dropped the %s of submission %s: staff graded it meanwhile", result, submission_id)
    return True


def grading_job_state(*, session: Session, submission_id: uuid.UUID) -> GradingJobState | None:
    """The state of the submission's grading job (None: no job), as committed now: why a result was dropped
    (``staff_graded``: staff graded it meanwhile; else another worker took the claim over)."""
    return session.scalar(select(GradingJob.state).where(GradingJob.submission_id == submission_id)
                          .execution_options(populate_existing=True))


def record_ai_suggestion(*, session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID,
                         essays: list[EssaySuggestion]) -> uuid.UUID | None:
    """Store the AI suggestion of a claimed submission (all its essays) and close the job; returns the AI grade's
    id, or None when ``claim_token`` no longer holds the job or staff graded the submission meanwhile (the late
    result is dropped and logged)."""
    job = _release_claim(session, submission_id, claim_token, "AI suggestion")
    if job is None or _graded_meanwhile(session, job, submission_id, "AI suggestion"):
        return None
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    questions = {q.id: q for q in _assessments._questions_of(session, submission.assessment_id)}
    auto = _auto_total(submission)
    per_essay: dict[str, Any] = {}
    total = float(auto)
    for essay in essays:
        question = questions[essay.question_id]
        low, high = essay.score_range
        points = _to_points(essay.score, high, question.points)
        total += points
        per_essay[str(essay.question_id)] = {
            "prompt_id": essay.prompt_id, "score": essay.score, "points": points,
            "interval": list(essay.interval) if essay.interval else None, "confidence": essay.confidence,
            "needs_review": essay.needs_review, "reasons": list(essay.reasons), "model_version": essay.model_version,
            "score_range": [low, high], "question_points": question.points}
    confidence = min((e.confidence for e in essays), default=0.0)
    reasons = [reason for e in essays for reason in e.reasons]
    versions = sorted({e.model_version for e in essays if e.model_version})
    details = {"model_name": "grading_nlp", "model_version": ",".join(versions) or None, "confidence": confidence,
               "needs_review": any(e.needs_review for e in essays), "reasons": reasons, "essays": per_essay,
               "auto_score": auto, "attempt": job.attempts}
    # Closed before record_ai_grade commits, in that same transaction: committed apart, the job would be pending
    # and unleased for a moment, and a worker whose claim waited on the row would take it again.
    job.state, job.reasons, job.last_error = GradingJobState.suggested, reasons, None
    grade = _assessments.record_ai_grade(session=session, submission_id=submission_id, score=round(total, 4),
                                         details=details)
    return grade.id


def _auto_total(submission: Submission) -> float:
    """Points of the auto-graded (non-essay) questions of a submission."""
    scores = (submission.metadata_ or {}).get("auto_scores") or {}
    return float(sum(v for v in scores.values() if v is not None))


def _to_points(score: float, prompt_max: float, question_points: float) -> float:
    if prompt_max <= 0 or math.isclose(prompt_max, question_points):
        return float(score)
    return round(float(score) * question_points / prompt_max, 4)


def _to_prompt_scale(points: float, prompt_max: float, question_points: float) -> float:
    if prompt_max <= 0 or math.isclose(prompt_max, question_points) or question_points <= 0:
        return float(points)
    return float(points) * prompt_max / question_points


def record_manual_grading(*, session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID,
                          reasons: list[str]) -> bool:
    """Close the job without an AI grade: staff grade it from scratch (the reasons say why). False when
    ``claim_token`` no longer holds the job (dropped and logged)."""
    job = _release_claim(session, submission_id, claim_token, "needs-manual-grading result")
    if job is None or _graded_meanwhile(session, job, submission_id, "needs-manual-grading result"):
        return False
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    job.state, job.reasons = GradingJobState.needs_manual_grading, list(reasons)
    emit(session, event_type="grade.needs_manual_grading", user_id=submission.user_id,
         course_id=submission.course_id, payload={"submission_id": str(submission.id), "reasons": list(reasons)})
    session.commit()
    return True


def record_grading_failure(*, session: Session, submission_id: uuid.UUID, claim_token: uuid.UUID, error: str,
                           now: datetime | None = None, max_attempts: int = MAX_ATTEMPTS,
                           backoff_seconds: float = BACKOFF_SECONDS) -> GradingJobState | None:
    """A try failed: keep the error, retry after ``backoff × 2^(attempt-1)``, or after ``max_attempts`` tries
    hand the submission to staff as "needs manual grading". Returns the job's new state, or None when
    ``claim_token`` no longer holds the job (the new claimant's try counts, not this one; logged)."""
    now = _now(now)
    job = _release_claim(session, submission_id, claim_token, "failed try")
    if job is None or _graded_meanwhile(session, job, submission_id, "failed try"):
        return None
    job.last_error = error[:2000]
    if job.attempts >= max_attempts:
        job.state = GradingJobState.needs_manual_grading
        job.reasons = [f"AI grading failed {job.attempts} times (last error: {job.last_error}); grade this essay "
                       "by hand."]
    else:
        job.next_attempt_at = now + timedelta(seconds=backoff_seconds * 2 ** (job.attempts - 1))
    session.commit()
    return job.state


# --- the review queue (staff's side) ----------------------------------------------------------------
def _course(session: Session, course_id: uuid.UUID) -> Course:
    return get_or_not_found(session, Course, course_id, "Course", "list courses with GET /api/v1/courses")


def _latest_ai(session: Session, submission_id: uuid.UUID) -> Grade | None:
    return session.scalar(select(Grade).where(Grade.submission_id == submission_id, Grade.graded_by == GradedBy.ai)
                          .order_by(Grade.created_at.desc()))


def _review_state(submission: Submission, job: GradingJob | None) -> ReviewState:
    if submission.status is SubmissionStatus.ai_suggested:
        return ReviewState.ai_suggested
    if job is not None and job.state is GradingJobState.needs_manual_grading:
        return ReviewState.needs_manual_grading
    if job is not None and job.attempts > 0 and job.last_error:
        return ReviewState.retrying
    return ReviewState.waiting_for_ai


def _queue_item(session: Session, submission: Submission, job: GradingJob | None,
                assessment: Assessment, learner: User | None) -> GradingQueueItemPublic:
    ai = _latest_ai(session, submission.id) if submission.status is SubmissionStatus.ai_suggested else None
    info = ai.details if ai else {}
    questions = _assessments._questions_of(session, submission.assessment_id)
    essays = []
    for question in questions:
        if question.kind is not QuestionKind.essay:
            continue
        suggestion = (info.get("essays") or {}).get(str(question.id)) or {}
        prompt_id = essay_prompt_of(question, assessment)
        score_range = suggestion.get("score_range") or _prompt_range(prompt_id)
        essays.append(GradingQueueEssayPublic(
            question_id=question.id, question_prompt=question.prompt,
            essay=_assessments.readable(str(submission.answers.get(str(question.id), ""))), prompt_id=prompt_id,
            rubric=question.rubric or {}, points=question.points, score_range=score_range,
            ai_score=suggestion.get("score"), ai_points=suggestion.get("points"),
            interval=suggestion.get("interval"), confidence=suggestion.get("confidence"),
            reasons=suggestion.get("reasons") or []))
    state = _review_state(submission, job)
    reasons = list(info.get("reasons") or []) if ai else list(job.reasons if job else [])
    max_score = float(sum(q.points for q in questions))
    return GradingQueueItemPublic(
        submission_id=submission.id, assessment_id=assessment.id, assessment_title=assessment.title,
        course_id=submission.course_id, user_id=submission.user_id, learner_name=learner.name if learner else None,
        attempt=submission.attempt, submitted_at=submission.submitted_at, review_state=state,
        ai_score=ai.score if ai else None, max_score=max_score,
        confidence=info.get("confidence") if ai else None,
        needs_review=bool(info.get("needs_review", True)) if ai else True,
        reasons=reasons, model_version=info.get("model_version") if ai else None,
        grading_attempts=job.attempts if job else 0, last_error=job.last_error if job else None,
        next_attempt_at=_aware(job.next_attempt_at) if job and state is ReviewState.retrying else None,
        essays=essays)


def _prompt_range(prompt_id: int | None) -> list[int] | None:
    from learnloop.datasets import PROMPT_SCORE_RANGES

    found = PROMPT_SCORE_RANGES.get(prompt_id) if prompt_id is not None else None
    return list(found) if found else None


_STATE_ORDER = {ReviewState.needs_manual_grading: 0, ReviewState.ai_suggested: 1, ReviewState.retrying: 2,
                ReviewState.waiting_for_ai: 3}


def _priority(item: GradingQueueItemPublic) -> tuple:
    # Hand-grading first, then AI suggestions the model flagged, least confident first; waiting ones last.
    return (_STATE_ORDER[item.review_state], not item.needs_review,
            item.confidence if item.confidence is not None else 0.0, item.submitted_at)


def grading_queue(*, session: Session, actor: Principal | None, course_id: uuid.UUID, limit: int = 50,
                  offset: int = 0, window: int = AGREEMENT_WINDOW) -> GradingQueuePublic:
    """Undecided essay submissions of a course for its staff: needs-manual-grading first, then AI suggestions
    that need review, least confident first; with the rolling AI-vs-instructor agreement."""
    course = _course(session, course_id)
    policy.authorize(session, actor, Permission.submissions_grade, Scope.of_course(course),
                     what="the grading queue of this course")
    rows = session.execute(
        select(Submission, GradingJob, Assessment, User)
        .join(Assessment, Assessment.id == Submission.assessment_id)
        .outerjoin(GradingJob, GradingJob.submission_id == Submission.id)
        .outerjoin(User, User.id == Submission.user_id)
        .where(Submission.course_id == course.id, Submission.status.in_(QUEUE_STATUSES))).all()
    items = sorted((_queue_item(session, s, j, a, u) for s, j, a, u in rows), key=_priority)
    return GradingQueuePublic(data=items[offset:offset + limit], count=len(items), limit=limit, offset=offset,
                              agreement=agreement(session=session, actor=None, course_id=course.id, window=window))


# --- decisions ---------------------------------------------------------------------------------------
def _refuse_if_decided(session: Session, actor: Principal | None, submission_id: uuid.UUID) -> None:
    """The review page offers decisions on waiting essays only, so a decision it posts on an essay that has a final
    grade comes from a page loaded before a colleague (or another tab) decided it: refuse it rather than silently
    replace that grade and the comment the learner reads. The JSON API may decide again on purpose.

    The check is a conditional UPDATE of the still-waiting submission, in the transaction that writes the grade:
    it keeps the row locked (PostgreSQL) or the database write-locked (SQLite) until that commit, so of two staff
    posting at the same moment the second waits, then finds the essay graded and is refused."""
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    # Authorize first: whether an essay is graded is not for everyone to learn.
    policy.authorize(session, actor, Permission.submissions_grade,
                     Scope.of_course(_course(session, submission.course_id)), what="grading this submission")
    _assessments.lock_for_grading(session, submission.id)  # the job first, as the worker does (no deadlock)
    waiting = session.execute(
        update(Submission).where(Submission.id == submission.id, Submission.status.in_(QUEUE_STATUSES))
        .values(status=Submission.status).execution_options(synchronize_session=False)).rowcount
    # Read the row as it is now (a worker may have turned it ai_suggested, a colleague graded) for what follows.
    submission = session.scalar(select(Submission).where(Submission.id == submission.id)
                                .execution_options(populate_existing=True))
    if waiting == 1:
        return
    session.rollback()
    final = session.scalar(select(Grade).where(Grade.submission_id == submission.id, Grade.is_final)
                           .order_by(Grade.created_at.desc()))
    grader = session.get(User, final.grader_id) if final is not None and final.grader_id else None
    graded = f" {final.score:g}/{final.max_score:g}" if final is not None else ""
    raise Conflict(f"This essay was already graded{graded}{f' by {grader.name}' if grader else ''} after this page "
                   "was loaded; your decision was not saved. The queue now shows only the essays still waiting.",
                   details={"submission_id": str(submission.id), "status": submission.status.value})


def accept_ai_grade(*, session: Session, actor: Principal | None, submission_id: uuid.UUID, data: AiGradeAccept,
                    settings: Settings | None = None, undecided_only: bool = False) -> SubmissionPublic:
    """Make the AI suggestion the final grade (the learner sees it labelled "AI-assisted"). ``undecided_only`` (the
    review page): refuse with Conflict when the essay already has a final grade instead of replacing it."""
    if undecided_only:
        _refuse_if_decided(session, actor, submission_id)
    result = _assessments.grade_submission(session=session, actor=actor, submission_id=submission_id,
                                           data=GradeUpdate(accept_ai=True, feedback=data.feedback))
    _after_decision(session, submission_id, settings)
    return result


def override_ai_grade(*, session: Session, actor: Principal | None, submission_id: uuid.UUID,
                      data: AiGradeOverride, settings: Settings | None = None,
                      undecided_only: bool = False) -> SubmissionPublic:
    """Give the final score yourself. Overriding an AI suggestion with a different score needs a comment: it
    tells the learner why and becomes a labelled example for the next training run. ``undecided_only`` (the review
    page): refuse with Conflict when the essay already has a final grade instead of replacing it."""
    if undecided_only:
        _refuse_if_decided(session, actor, submission_id)
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    # Authorize before comparing with the suggestion: otherwise which scores need a comment tells anyone the
    # hidden AI score (the learner included).
    policy.authorize(session, actor, Permission.submissions_grade, Scope.of_course(_course(session,
                     submission.course_id)), what="grading this submission")
    ai = _latest_ai(session, submission.id) if submission.status is SubmissionStatus.ai_suggested else None
    if ai is not None and not math.isclose(ai.score, data.score) and not data.comment.strip():
        raise InvalidInput("Overriding the AI suggestion needs a comment for the learner (why this score?)",
                           details={"field": "comment"})
    result = _assessments.grade_submission(session=session, actor=actor, submission_id=submission_id,
                                           data=GradeUpdate(score=data.score, feedback=data.comment))
    _after_decision(session, submission_id, settings)
    return result


def set_grade(*, session: Session, actor: Principal | None, submission_id: uuid.UUID, data: GradeUpdate,
              settings: Settings | None = None) -> SubmissionPublic:
    """``PUT /submissions/{id}/grade``: staff set the final grade (a score, or ``accept_ai``). On an AI-graded essay
    it is a decision like accept and override, so monitoring sees it too."""
    result = _assessments.grade_submission(session=session, actor=actor, submission_id=submission_id, data=data)
    _after_decision(session, submission_id, settings)
    return result


def _after_decision(session: Session, submission_id: uuid.UUID, settings: Settings | None) -> None:
    examples = [e for e in _examples(session, submission_ids=[submission_id]) if e.ai_score is not None]
    if not examples:
        return
    _audit.record(session, actor_id=None, action="grading.decision_labelled", resource_type="submission",
                  resource_id=submission_id, details={"examples": len(examples)})
    session.commit()
    if settings is not None:
        _log_for_monitoring(settings, examples)


def _log_for_monitoring(settings: Settings, examples: list[LabelledEssay]) -> None:
    # One line per decision, keyed by entity.submission_id: when staff decide again (accept, then override, then
    # PUT /grade), monitoring's reader keeps only the latest line of the submission, the final grade.
    folder = settings.data_path.joinpath(*PREDICTION_LOG_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    with (folder / f"{now:%Y-%m-%d}-platform.jsonl").open("a", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps({
                "ts": example.decided_at.isoformat(), "model_name": f"essay_grader_p{example.prompt_id}",
                "model_version": example.model_version, "request_id": str(example.submission_id),
                "entity": {"submission_id": str(example.submission_id), "course_id": str(example.course_id),
                           "label": example.final_score},
                "features": {"n_words": len(example.essay.split()), "confidence": example.confidence},
                "output": example.ai_score}) + "\n")


# --- labelled examples and agreement ----------------------------------------------------------------
@dataclass(frozen=True)
class LabelledEssay:
    """One instructor decision on an essay: the essay, its prompt, the final score and the AI's (prompt scale)."""

    submission_id: uuid.UUID
    course_id: uuid.UUID
    question_id: uuid.UUID
    prompt_id: int
    question_prompt: str
    essay: str
    final_score: int
    ai_score: int | None
    accepted_ai: bool
    model_version: str | None
    confidence: float | None
    decided_at: datetime


def _examples(session: Session, *, course_id: uuid.UUID | None = None, prompt_id: int | None = None,
              submission_ids: list[uuid.UUID] | None = None) -> list[LabelledEssay]:
    statement = (select(Grade, Submission, Assessment).join(Submission, Submission.id == Grade.submission_id)
                 .join(Assessment, Assessment.id == Submission.assessment_id)
                 .where(Grade.is_final, Grade.graded_by == GradedBy.instructor,
                        Submission.status == SubmissionStatus.graded,
                        # only assessments with an essay (imports hold many graded rows without one)
                        Assessment.id.in_(select(AssessmentQuestion.assessment_id)
                                          .join(Question, Question.id == AssessmentQuestion.question_id)
                                          .where(Question.kind == QuestionKind.essay))))
    if course_id is not None:
        statement = statement.where(Submission.course_id == course_id)
    if submission_ids is not None:
        statement = statement.where(Submission.id.in_(submission_ids))
    out = []
    for grade, submission, assessment in session.execute(statement.order_by(Grade.created_at)).all():
        essays = [q for q in _assessments._questions_of(session, assessment.id) if q.kind is QuestionKind.essay]
        if len(essays) != 1:
            continue  # one total score cannot be split over several essays
        question = essays[0]
        prompt = essay_prompt_of(question, assessment)
        if prompt is None or (prompt_id is not None and prompt != prompt_id):
            continue
        score_range = _prompt_range(prompt)
        ai_grade = session.get(Grade, uuid.UUID(grade.details["ai_grade_id"])) \
            if grade.details.get("ai_grade_id") else None
        suggestion = ((ai_grade.details.get("essays") or {}).get(str(question.id)) or {}) if ai_grade else {}
        high = (suggestion.get("score_range") or score_range or [0, question.points])[1]
        auto = _auto_total(submission)
        final = _to_prompt_scale(grade.score - auto, high, question.points)
        low = (suggestion.get("score_range") or score_range or [0, 0])[0]
        out.append(LabelledEssay(
            submission_id=submission.id, course_id=submission.course_id, question_id=question.id, prompt_id=prompt,
            question_prompt=question.prompt,
            essay=_assessments.readable(str(submission.answers.get(str(question.id), ""))),
            final_score=int(min(max(round(final), low), high)),
            ai_score=suggestion.get("score"), accepted_ai=bool(grade.details.get("accepted_ai")),
            model_version=suggestion.get("model_version"), confidence=suggestion.get("confidence"),
            decided_at=_aware(grade.created_at)))
    return out


def labelled_examples(*, session: Session, course_id: uuid.UUID | None = None,
                      prompt_id: int | None = None) -> list[LabelledEssay]:
    """Every staff decision on a single-essay submission with an ASAP prompt, oldest first (training labels)."""
    return _examples(session, course_id=course_id, prompt_id=prompt_id)


def _qwk(pairs: list[tuple[int, int]]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(pairs) < 2:
        return None
    ai, staff = zip(*pairs, strict=True)
    if len(set(ai) | set(staff)) < 2:
        return 1.0  # every score the same on both sides: perfect agreement (kappa is 0/0 there)
    value = cohen_kappa_score(list(ai), list(staff), weights="quadratic")
    return None if math.isnan(value) else round(float(value), 4)


def agreement(*, session: Session, actor: Principal | None, course_id: uuid.UUID | None = None,
              window: int = AGREEMENT_WINDOW) -> GradingAgreementPublic:
    """Quadratic weighted kappa between the AI's and staff's scores over the last ``window`` decisions per prompt
    (and pooled), on the prompts' own scales."""
    if course_id is not None and actor is not None:
        policy.authorize(session, actor, Permission.submissions_grade, Scope.of_course(_course(session, course_id)),
                         what="grading agreement of this course")
    by_prompt: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for example in _examples(session, course_id=course_id):
        if example.ai_score is not None:
            by_prompt[example.prompt_id].append((int(example.ai_score), example.final_score))
    prompts, pooled = [], []
    for prompt, pairs in sorted(by_prompt.items()):
        recent = pairs[-window:]
        pooled += recent
        prompts.append(PromptAgreementPublic(
            prompt_id=prompt, n=len(recent), qwk=_qwk(recent),
            exact=round(sum(a == b for a, b in recent) / len(recent), 4)))
    return GradingAgreementPublic(window=window, n=len(pooled), qwk=_qwk(pooled), by_prompt=prompts)


# --- the learner's and the page's helpers -----------------------------------------------------------
def staff_courses(*, session: Session, actor: Principal) -> list[Course]:
    """Courses whose grading queue ``actor`` may open (instructor/creator, scoped grants, or all for admins)."""
    statement = select(Course).order_by(Course.title).limit(200)
    if not actor.is_admin:
        scoped = [g.scope_id for g in actor.grants if g.scope_type is ScopeType.course and g.scope_id]
        ids = []
        for value in scoped:
            try:
                ids.append(uuid.UUID(value))
            except ValueError:
                continue
        statement = statement.where(or_(Course.instructor_id == actor.id, Course.created_by == actor.id,
                                        Course.id.in_(ids)))
    return [c for c in session.scalars(statement)
            if policy.has_permission(session, actor, Permission.submissions_grade, Scope.of_course(c))]


def my_submissions(*, session: Session, actor: Principal, limit: int = 100) -> list[tuple[Submission, Assessment,
                                                                                          SubmissionPublic]]:
    """The caller's own submissions, newest first, as the learner sees them (final grades only)."""
    rows = session.execute(select(Submission, Assessment).join(Assessment, Assessment.id == Submission.assessment_id)
                           .where(Submission.user_id == actor.id)
                           .order_by(Submission.submitted_at.desc()).limit(limit)).all()
    out = []
    for submission, assessment in rows:
        course = session.get(Course, submission.course_id)
        out.append((submission, assessment, _assessments.submission_public(session, actor, submission, course)))
    return out


__all__ = ["AGREEMENT_WINDOW", "MAX_ATTEMPTS", "EssaySuggestion", "EssayToGrade", "GradingTask", "LabelledEssay",
           "accept_ai_grade", "agreement", "claim_grading_tasks", "enqueue_missing_jobs", "grading_job_state",
           "grading_queue",
           "labelled_examples", "my_submissions", "override_ai_grade", "record_ai_suggestion",
           "record_grading_failure", "record_manual_grading", "renew_leases", "set_grade", "staff_courses"]
