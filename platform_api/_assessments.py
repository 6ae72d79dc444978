"""Questions, assessments, submissions and grading.

Multiple-choice and fill-in-the-blank answers are graded at once. A submission with an essay is
``queued_for_ai_grading`` and announced by ``submission.created`` on ``lms.assessments.events``; the AI
suggestion (``record_ai_grade``) stays invisible to the learner until course staff accept or override it
with ``PUT /submissions/{id}/grade``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, PermissionDenied
from platform_api import _audit, policy
from platform_api._db import get_or_not_found, paginate
from platform_api._models import (
    Assessment,
    AssessmentQuestion,
    Course,
    Enrollment,
    Grade,
    GradingJob,
    GradingJobState,
    Question,
    Submission,
    User,
    utcnow,
)
from platform_api._outbox import emit
from platform_api._schemas import (
    AssessmentCreate,
    AssessmentPublic,
    EssayQuestionCreate,
    FillInTheBlankQuestionCreate,
    GradePublic,
    GradeUpdate,
    MultipleChoiceQuestionCreate,
    QuestionPublic,
    SubmissionCreate,
    SubmissionPublic,
    UserAssessmentPublic,
)
from platform_api.data import (
    EnrollmentStatus,
    GradedBy,
    QuestionKind,
    SubmissionPublicStatus,
    SubmissionStatus,
)
from platform_api.policy import Permission, Principal, Scope


def _actor_id(actor: Principal | None) -> uuid.UUID | None:
    return actor.id if actor is not None else None


def _course(session: Session, course_id: uuid.UUID) -> Course:
    return get_or_not_found(session, Course, course_id, "Course", "list courses with GET /api/v1/courses")


# --- questions --------------------------------------------------------------------------------------
def create_question(*, session: Session, actor: Principal | None,
                    data: MultipleChoiceQuestionCreate | FillInTheBlankQuestionCreate | EssayQuestionCreate
                    ) -> Question:
    course = _course(session, data.course_id)
    policy.authorize(session, actor, Permission.questions_create, Scope.of_course(course), what="adding questions")
    rubric = None
    match data:
        case MultipleChoiceQuestionCreate():
            spec = {"options": data.options, "correct": sorted(set(data.correct))}
            points = data.points
        case FillInTheBlankQuestionCreate():
            spec = {"accepted": data.accepted, "case_sensitive": data.case_sensitive}
            points = data.points
        case EssayQuestionCreate():
            spec = {"min_words": data.min_words}
            rubric = data.rubric.model_dump(exclude_none=True)
            points = float(sum(c.points for c in data.rubric.criteria))
    question = Question(course_id=course.id, kind=data.kind, prompt=data.prompt, spec=spec, rubric=rubric,
                        points=points, created_by=_actor_id(actor))
    session.add(question)
    session.flush()
    emit(session, event_type="question.created", user_id=_actor_id(actor), course_id=course.id,
         payload={"question_id": str(question.id), "kind": question.kind.value})
    _audit.record(session, actor_id=_actor_id(actor), action="question.create", resource_type="question",
                  resource_id=question.id)
    session.commit()
    return question


def question_public(question: Question, *, with_key: bool) -> QuestionPublic:
    key = None
    if with_key and question.kind is not QuestionKind.essay:
        key = {k: v for k, v in question.spec.items() if k != "options"}
    return QuestionPublic(id=question.id, course_id=question.course_id, kind=question.kind, prompt=question.prompt,
                          points=question.points, options=question.spec.get("options"), rubric=question.rubric,
                          answer_key=key, created_at=question.created_at)


def get_question(*, session: Session, actor: Principal | None, question_id: uuid.UUID) -> QuestionPublic:
    question = get_or_not_found(session, Question, question_id, "Question")
    scope = Scope.of_course(_course(session, question.course_id))
    staff = policy.has_permission(session, actor, Permission.questions_read, scope) if actor else True
    if not staff:
        policy.authorize(session, actor, Permission.assessments_read, scope, what="this question")
    return question_public(question, with_key=staff)


# --- assessments ------------------------------------------------------------------------------------
def create_assessment(*, session: Session, actor: Principal | None, data: AssessmentCreate) -> Assessment:
    course = _course(session, data.course_id)
    policy.authorize(session, actor, Permission.assessments_create, Scope.of_course(course),
                     what="adding assessments")
    wanted = list(dict.fromkeys(data.question_ids))
    found = {q.id: q for q in session.scalars(select(Question).where(Question.id.in_(wanted)))} if wanted else {}
    missing = [str(q) for q in wanted if q not in found]
    if missing:
        raise InvalidInput(f"Unknown question ids {missing}; create them with POST /api/v1/questions first",
                           details={"field": "question_ids", "missing": missing})
    foreign = [str(q.id) for q in found.values() if q.course_id != course.id]
    if foreign:
        raise InvalidInput(f"Questions {foreign} belong to another course; use questions of course {course.id}",
                           details={"field": "question_ids", "other_course": foreign})
    assessment = Assessment(course_id=course.id, title=data.title, kind=data.kind, weight=data.weight,
                            due_at=data.due_at, max_attempts=data.max_attempts, metadata_=data.metadata,
                            created_by=_actor_id(actor))
    session.add(assessment)
    session.flush()
    for position, question_id in enumerate(wanted):
        session.add(AssessmentQuestion(assessment_id=assessment.id, question_id=question_id, position=position))
    emit(session, event_type="assessment.created", user_id=_actor_id(actor), course_id=course.id,
         payload={"assessment_id": str(assessment.id), "kind": assessment.kind.value,
                  "question_count": len(wanted)})
    _audit.record(session, actor_id=_actor_id(actor), action="assessment.create", resource_type="assessment",
                  resource_id=assessment.id)
    session.commit()
    return assessment


def _questions_of(session: Session, assessment_id: uuid.UUID) -> list[Question]:
    return list(session.scalars(select(Question).join(AssessmentQuestion, AssessmentQuestion.question_id == Question.id)
                                .where(AssessmentQuestion.assessment_id == assessment_id)
                                .order_by(AssessmentQuestion.position)))


def get_assessment(*, session: Session, actor: Principal | None, assessment_id: uuid.UUID) -> AssessmentPublic:
    assessment = get_or_not_found(session, Assessment, assessment_id, "Assessment")
    scope = Scope.of_course(_course(session, assessment.course_id))
    policy.authorize(session, actor, Permission.assessments_read, scope, what="this assessment (enroll first)")
    staff = policy.has_permission(session, actor, Permission.questions_read, scope) if actor else True
    return AssessmentPublic(id=assessment.id, course_id=assessment.course_id, title=assessment.title,
                            kind=assessment.kind, weight=assessment.weight, due_at=assessment.due_at,
                            max_attempts=assessment.max_attempts, metadata=assessment.metadata_,
                            created_at=assessment.created_at,
                            questions=[question_public(q, with_key=staff)
                                       for q in _questions_of(session, assessment.id)])


# --- submissions ------------------------------------------------------------------------------------
def _normalise(text: str, *, case_sensitive: bool) -> str:
    text = re.sub(r"\s+", " ", text.strip())
    return text if case_sensitive else text.casefold()


def _auto_score(question: Question, answer: Any) -> float:
    if question.kind is QuestionKind.multiple_choice:
        chosen = {answer} if isinstance(answer, int) else set(answer)
        return question.points if chosen == set(question.spec["correct"]) else 0.0
    case_sensitive = bool(question.spec.get("case_sensitive"))
    accepted = {_normalise(a, case_sensitive=case_sensitive) for a in question.spec["accepted"]}
    return question.points if _normalise(answer, case_sensitive=case_sensitive) in accepted else 0.0


def _check_answer(question: Question, answer: Any) -> None:
    where = {"field": f"answers.{question.id}"}
    if question.kind is QuestionKind.multiple_choice:
        indices = [answer] if isinstance(answer, int) else answer
        if not isinstance(indices, list) or not indices:
            raise InvalidInput(f"Question {question.id} is multiple choice: answer with option indices", details=where)
        if any(i >= len(question.spec["options"]) for i in indices):
            raise InvalidInput(f"Question {question.id} has {len(question.spec['options'])} options; "
                               f"indices must be below that", details=where)
    elif not isinstance(answer, str):
        raise InvalidInput(f"Question {question.id} is {question.kind.value}: answer with text", details=where)


def _check_length(question: Question, answer: Any) -> None:
    """An essay shorter than the question's ``min_words`` (an unanswered one included) is refused."""
    minimum = (question.spec or {}).get("min_words") if question.kind is QuestionKind.essay else None
    if not isinstance(minimum, int) or isinstance(minimum, bool):
        return
    words = len(answer.split()) if isinstance(answer, str) else 0
    if words < minimum:
        prompt = question.prompt if len(question.prompt) <= 60 else question.prompt[:57] + "..."
        raise InvalidInput(f"The essay for question {question.id} ('{prompt}') needs at least {minimum} words; "
                           f"yours has {words}. Write more, then submit again",
                           details={"field": f"answers.{question.id}", "min_words": minimum, "words": words})


def last_attempts(session: Session, assessment_ids: Iterable[uuid.UUID]) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    """(assessment id, user id) → the highest attempt number stored, for the given assessments."""
    wanted = set(assessment_ids)
    if not wanted:
        return {}
    rows = session.execute(select(Submission.assessment_id, Submission.user_id, func.max(Submission.attempt))
                           .where(Submission.assessment_id.in_(wanted))
                           .group_by(Submission.assessment_id, Submission.user_id)).all()
    return {(assessment_id, user_id): int(last) for assessment_id, user_id, last in rows}


def _attempts_so_far(session: Session, assessment_id: uuid.UUID, user_id: uuid.UUID) -> tuple[int, int]:
    """How many attempts the learner made, and the highest attempt number (what the next one follows)."""
    count, last = session.execute(select(func.count(), func.max(Submission.attempt)).where(
        Submission.assessment_id == assessment_id, Submission.user_id == user_id)).one()
    return int(count or 0), int(last or 0)


SUBMIT_TRIES = 3  # a concurrent submission took the attempt number: count again and retry (or refuse)


def submit(*, session: Session, actor: Principal | None, data: SubmissionCreate,
           user_id: uuid.UUID | None = None) -> Submission:
    """Store a submission as the learner's next attempt. The unique (assessment, user, attempt) makes concurrent
    submissions of one learner queue up: the one that loses the race counts again, so ``max_attempts`` holds."""
    for _ in range(SUBMIT_TRIES):
        try:
            return _submit_once(session=session, actor=actor, data=data, user_id=user_id)
        except IntegrityError as exc:
            session.rollback()
            if not _is_attempt_clash(exc):
                raise
            clash = exc
    raise Conflict(f"Other submissions to assessment {data.assessment_id} were saved at the same moment; look at "
                   "your submissions, then submit again if attempts are left") from clash


def _is_attempt_clash(exc: IntegrityError) -> bool:
    # SQLite names the columns, PostgreSQL the constraint
    text = str(exc.orig)
    return "uq_submissions_assessment_user_attempt" in text or "submissions.attempt" in text


def _submit_once(*, session: Session, actor: Principal | None, data: SubmissionCreate,
                 user_id: uuid.UUID | None) -> Submission:
    assessment = get_or_not_found(session, Assessment, data.assessment_id, "Assessment")
    course = _course(session, assessment.course_id)
    learner_id = user_id or _actor_id(actor)
    if learner_id is None:
        raise InvalidInput("user_id is required for a system submission")
    if actor is not None:
        policy.authorize(session, actor, Permission.submissions_create, Scope.of_course(course),
                         what="submitting to this assessment (enroll in the course first)")
        status = session.scalar(select(Enrollment.status).where(Enrollment.user_id == learner_id,
                                                                 Enrollment.course_id == course.id))
        if status is not EnrollmentStatus.enrolled:
            raise Conflict(f"You are not an active learner of course {course.id}"
                           + (f" (enrollment is {status.value})" if status else "; enroll first"))
    questions = {q.id: q for q in _questions_of(session, assessment.id)}
    if not questions:
        raise Conflict(f"Assessment {assessment.id} has no questions yet; nothing to submit")
    unknown = [str(q) for q in data.answers if q not in questions]
    if unknown:
        raise InvalidInput(f"Answers to questions {unknown} that are not in assessment {assessment.id}",
                           details={"field": "answers", "unknown": unknown})
    for question_id, answer in data.answers.items():
        _check_answer(questions[question_id], answer)
    for question in questions.values():
        _check_length(question, data.answers.get(question.id))
    attempts, last_attempt = _attempts_so_far(session, assessment.id, learner_id)
    if assessment.max_attempts is not None and attempts >= assessment.max_attempts:
        raise Conflict(f"All {assessment.max_attempts} attempts of assessment {assessment.id} are used")

    per_question: dict[str, float | None] = {}
    for question_id, question in questions.items():
        answer = data.answers.get(question_id)
        if question.kind is QuestionKind.essay:
            per_question[str(question_id)] = None
        else:
            per_question[str(question_id)] = 0.0 if answer is None else _auto_score(question, answer)
    has_essay = any(q.kind is QuestionKind.essay for q in questions.values())
    max_score = float(sum(q.points for q in questions.values()))
    submission = Submission(assessment_id=assessment.id, user_id=learner_id, course_id=course.id,
                            answers={str(k): v for k, v in data.answers.items()}, attempt=last_attempt + 1,
                            status=SubmissionStatus.queued_for_ai_grading if has_essay else SubmissionStatus.graded,
                            metadata_={"auto_scores": per_question})
    session.add(submission)
    session.flush()
    payload: dict[str, Any] = {"submission_id": str(submission.id), "assessment_id": str(assessment.id),
                               "status": submission.status.value, "max_score": max_score,
                               "essay_question_ids": [str(q) for q, v in per_question.items() if v is None
                                                      and questions[uuid.UUID(q)].kind is QuestionKind.essay]}
    if not has_essay:
        score = float(sum(v for v in per_question.values() if v is not None))
        session.add(Grade(submission_id=submission.id, score=score, max_score=max_score, graded_by=GradedBy.auto,
                          is_final=True, details={"per_question": per_question}))
        payload["score"] = score
    emit(session, event_type="submission.created", user_id=learner_id, course_id=course.id, payload=payload)
    _audit.record(session, actor_id=_actor_id(actor), action="submission.create", resource_type="submission",
                  resource_id=submission.id)
    session.commit()
    return submission


def _final_grade(session: Session, submission_id: uuid.UUID) -> Grade | None:
    return session.scalar(select(Grade).where(Grade.submission_id == submission_id, Grade.is_final)
                          .order_by(Grade.created_at.desc()))


def readable(value: Any) -> Any:
    """``value`` with lone surrogates (undecodable bytes an import kept) replaced, so it can be sent as JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", errors="replace").decode("utf-8")
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def grade_label(grade: Grade | None) -> str | None:
    """What the learner reads next to a final grade: an accepted AI suggestion is "AI-assisted"."""
    if grade is None:
        return None
    if grade.graded_by is GradedBy.auto:
        return "Auto-graded"
    if grade.graded_by is GradedBy.ai or (grade.details or {}).get("accepted_ai"):
        return "AI-assisted"
    return "Instructor-graded"


def public_status(status: SubmissionStatus, *, staff: bool) -> SubmissionPublicStatus:
    """The status a viewer reads: staff the stored one; anyone else ``in_review`` until the grade is final, so a
    learner never learns whether the AI has suggested a grade before staff decide."""
    if staff or status is SubmissionStatus.graded:
        return SubmissionPublicStatus(status.value)
    return SubmissionPublicStatus.in_review


def submission_public(session: Session, actor: Principal | None, submission: Submission,
                      course: Course) -> SubmissionPublic:
    staff = policy.is_course_staff(session, actor, course)
    final = _final_grade(session, submission.id) if submission.status is SubmissionStatus.graded else None
    grades = None
    if staff:
        grades = [GradePublic.model_validate(g) for g in session.scalars(
            select(Grade).where(Grade.submission_id == submission.id).order_by(Grade.created_at))]
    return SubmissionPublic(
        id=submission.id, assessment_id=submission.assessment_id, user_id=submission.user_id,
        course_id=submission.course_id, status=public_status(submission.status, staff=staff),
        attempt=submission.attempt,
        answers=readable(submission.answers), submitted_at=submission.submitted_at,
        score=final.score if final else None, max_score=final.max_score if final else None,
        feedback=final.feedback if final else None, grade_label=grade_label(final), grades=grades)


def get_submission(*, session: Session, actor: Principal | None, submission_id: uuid.UUID) -> SubmissionPublic:
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    course = _course(session, submission.course_id)
    if not policy.can_view_submission(session, actor, owner_id=submission.user_id, course=course):
        raise PermissionDenied("Submissions are visible only to the learner and the course's staff")
    return submission_public(session, actor, submission, course)


STAFF_GRADED_REASON = "Staff graded this submission before the AI grading finished."


def lock_for_grading(session: Session, submission_id: uuid.UUID) -> Submission:
    """Start the transaction of a staff grade: end the submission's AI grading job if it is still pending
    (``staff_graded``: its claim token is cleared, so the worker's late result is dropped, not retried) and return
    the submission re-read under a row lock.

    The job row is written first, then the submission locked: the worker records its result in that same order
    (job, then submission), so the two wait for each other (PostgreSQL row locks; SQLite's write lock from the
    first UPDATE) instead of deadlocking, and whichever commits second sees the other's write."""
    session.execute(
        update(GradingJob).where(GradingJob.submission_id == submission_id,
                                 GradingJob.state == GradingJobState.pending)
        .values(state=GradingJobState.staff_graded, leased_until=None, claim_token=None, updated_at=utcnow(),
                reasons=[STAFF_GRADED_REASON])
        .execution_options(synchronize_session=False))
    return session.scalar(select(Submission).where(Submission.id == submission_id).with_for_update()
                          .execution_options(populate_existing=True))


def grade_submission(*, session: Session, actor: Principal | None, submission_id: uuid.UUID,
                     data: GradeUpdate) -> SubmissionPublic:
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    course = _course(session, submission.course_id)
    policy.authorize(session, actor, Permission.submissions_grade, Scope.of_course(course),
                     what="grading this submission")
    # Read the status and the AI suggestion only once locked: a worker recording its suggestion meanwhile is
    # either waited for (and its suggestion seen here) or finds the job closed and drops it.
    submission = lock_for_grading(session, submission.id)
    try:
        max_score = float(sum(q.points for q in _questions_of(session, submission.assessment_id)))
        ai = session.scalar(select(Grade).where(Grade.submission_id == submission.id,
                                                Grade.graded_by == GradedBy.ai).order_by(Grade.created_at.desc()))
        if data.accept_ai:
            if ai is None:
                raise Conflict(f"Submission {submission.id} has no AI suggestion yet ({submission.status.value}); "
                               "give a score instead")
            score = ai.score if data.score is None else data.score
        else:
            score = data.score
        if score > max_score:
            raise InvalidInput(f"score {score} exceeds the maximum {max_score} of this assessment",
                               details={"field": "score", "max_score": max_score})
    except (Conflict, InvalidInput):
        session.rollback()  # the job stays as it was: nothing was graded
        raise
    session.execute(update(Grade).where(Grade.submission_id == submission.id).values(is_final=False))
    details = {"accepted_ai": bool(data.accept_ai and (data.score is None or ai and data.score == ai.score)),
               "ai_grade_id": str(ai.id) if ai else None, "ai_score": ai.score if ai else None,
               "previous_status": submission.status.value}
    session.add(Grade(submission_id=submission.id, score=score, max_score=max_score,
                      graded_by=GradedBy.instructor, grader_id=_actor_id(actor), is_final=True,
                      feedback=data.feedback, details=details))
    submission.status = SubmissionStatus.graded
    emit(session, event_type="submission.graded", user_id=submission.user_id, course_id=course.id,
         payload={"submission_id": str(submission.id), "score": score, "max_score": max_score,
                  "graded_by": GradedBy.instructor.value, **details})
    _audit.record(session, actor_id=_actor_id(actor), action="submission.grade", resource_type="submission",
                  resource_id=submission.id, details={"score": score, "accepted_ai": details["accepted_ai"]})
    session.commit()
    return submission_public(session, actor, submission, course)


def record_ai_grade(*, session: Session, submission_id: uuid.UUID, score: float, max_score: float | None = None,
                    feedback: str = "", details: dict[str, Any] | None = None) -> Grade:
    submission = get_or_not_found(session, Submission, submission_id, "Submission")
    question_max = float(sum(q.points for q in _questions_of(session, submission.assessment_id)))
    max_score = question_max if max_score is None else max_score
    if not 0 <= score <= max_score:
        raise InvalidInput(f"AI score {score} must be within 0..{max_score}")
    # A conditional UPDATE, not a read then a write: a staff grade committed after a read would be overwritten
    # (the learner's graded submission back "in review"). It also keeps the row locked until this commit.
    suggested = session.execute(
        update(Submission).where(Submission.id == submission.id, Submission.status != SubmissionStatus.graded)
        .values(status=SubmissionStatus.ai_suggested).execution_options(synchronize_session=False)).rowcount
    if suggested != 1:
        session.rollback()
        raise Conflict(f"Submission {submission_id} already has a final grade; AI suggestions are for queued "
                       "submissions only")
    session.refresh(submission)
    grade = Grade(submission_id=submission.id, score=score, max_score=max_score, graded_by=GradedBy.ai,
                  is_final=False, feedback=feedback, details=details or {})
    session.add(grade)
    session.flush()
    emit(session, event_type="grade.suggested", user_id=submission.user_id, course_id=submission.course_id,
         payload={"submission_id": str(submission.id), "grade_id": str(grade.id), "score": score,
                  "max_score": max_score, "graded_by": GradedBy.ai.value})
    session.commit()
    return grade


def list_user_assessments(*, session: Session, actor: Principal | None, user_id: uuid.UUID, limit: int,
                          offset: int) -> tuple[list[UserAssessmentPublic], int]:
    get_or_not_found(session, User, user_id, "User")  # as for the user's enrollments: unknown is 404, not []
    course_ids = list(session.scalars(select(Enrollment.course_id).where(Enrollment.user_id == user_id)))
    if actor is not None and actor.id != user_id and Permission.users_read not in actor.global_permissions():
        course_ids = [c for c in course_ids
                      if policy.is_course_staff(session, actor, session.get(Course, c))]
        if not course_ids:
            raise PermissionDenied("You may only see your own assessments or those of learners you teach")
    statement = select(Assessment).where(Assessment.course_id.in_(course_ids)).order_by(Assessment.created_at,
                                                                                        Assessment.id)
    assessments, total = paginate(session, statement, limit=limit, offset=offset)
    rows = []
    staff_of: dict[uuid.UUID, bool] = {}  # course → may the caller read its submissions' real status
    for assessment in assessments:
        if assessment.course_id not in staff_of:
            staff_of[assessment.course_id] = policy.is_course_staff(session, actor,
                                                                     session.get(Course, assessment.course_id))
        latest = session.scalar(select(Submission).where(Submission.assessment_id == assessment.id,
                                                         Submission.user_id == user_id)
                                .order_by(Submission.attempt.desc()))
        final = _final_grade(session, latest.id) if latest and latest.status is SubmissionStatus.graded else None
        rows.append(UserAssessmentPublic(
            assessment_id=assessment.id, course_id=assessment.course_id, title=assessment.title,
            kind=assessment.kind, due_at=assessment.due_at, submission_id=latest.id if latest else None,
            status=public_status(latest.status, staff=staff_of[assessment.course_id]) if latest else None,
            score=final.score if final else None,
            max_score=final.max_score if final else None, grade_label=grade_label(final)))
    return rows, total


def pending_essays(*, session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Essay answers of submissions queued for AI grading, oldest first."""
    out = []
    for submission in session.scalars(select(Submission).where(
            Submission.status == SubmissionStatus.queued_for_ai_grading).order_by(Submission.submitted_at)
            .limit(limit)):
        for question in _questions_of(session, submission.assessment_id):
            if question.kind is QuestionKind.essay:
                out.append({"submission_id": submission.id, "question_id": question.id, "prompt": question.prompt,
                            "essay": submission.answers.get(str(question.id), ""),
                            "rubric": question.rubric or {}, "max_points": question.points})
    return out
