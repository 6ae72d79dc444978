from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status

from platform_api import _assessments, _grading_review
from platform_api._schemas import (
    AssessmentCreate,
    AssessmentPublic,
    GradeUpdate,
    QuestionCreate,
    QuestionPublic,
    SubmissionCreate,
    SubmissionPublic,
)
from platform_api.deps import CurrentUser, SessionDep, SettingsDep

router = APIRouter(tags=["assessments"])


@router.post("/questions", response_model=QuestionPublic, status_code=status.HTTP_201_CREATED)
def create_question(body: QuestionCreate, session: SessionDep, actor: CurrentUser) -> Any:
    """`kind` selects the shape: `multiple_choice` (options + correct), `fill_in_the_blank` (accepted),
    `essay` (rubric)."""
    question = _assessments.create_question(session=session, actor=actor, data=body)
    return _assessments.question_public(question, with_key=True)


@router.get("/questions/{question_id}", response_model=QuestionPublic)
def get_question(question_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _assessments.get_question(session=session, actor=actor, question_id=question_id)


@router.post("/assessments", response_model=AssessmentPublic, status_code=status.HTTP_201_CREATED)
def create_assessment(body: AssessmentCreate, session: SessionDep, actor: CurrentUser) -> Any:
    assessment = _assessments.create_assessment(session=session, actor=actor, data=body)
    return _assessments.get_assessment(session=session, actor=actor, assessment_id=assessment.id)


@router.get("/assessments/{assessment_id}", response_model=AssessmentPublic)
def get_assessment(assessment_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _assessments.get_assessment(session=session, actor=actor, assessment_id=assessment_id)


@router.post("/submissions", response_model=SubmissionPublic, status_code=status.HTTP_201_CREATED,
             summary="Submit answers to an assessment (essays are queued for AI-assisted grading)")
def submit(body: SubmissionCreate, session: SessionDep, actor: CurrentUser) -> Any:
    """Multiple choice and fill-in answers are graded at once; with an essay the submission is
    `queued_for_ai_grading` (the learner reads `in_review`) and its score stays hidden until staff grade it."""
    submission = _assessments.submit(session=session, actor=actor, data=body)
    return _assessments.get_submission(session=session, actor=actor, submission_id=submission.id)


@router.get("/submissions/{submission_id}", response_model=SubmissionPublic)
def get_submission(submission_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _assessments.get_submission(session=session, actor=actor, submission_id=submission_id)


@router.put("/submissions/{submission_id}/grade", response_model=SubmissionPublic)
def grade_submission(submission_id: uuid.UUID, body: GradeUpdate, session: SessionDep, actor: CurrentUser,
                     settings: SettingsDep) -> Any:
    """Course staff set the final grade: a score (override) or `accept_ai: true`."""
    return _grading_review.set_grade(session=session, actor=actor, submission_id=submission_id, data=body,
                                     settings=settings)
