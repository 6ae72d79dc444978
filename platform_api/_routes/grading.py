"""AI-assisted grading review: the JSON API under ``/api/v1`` and the server-rendered review pages under
``/grading`` (the staff queue per course and the learner's own grades). Sign-in, the cookie, the layout and the
same-origin check on forms are the shared staff pages' (``platform_api._web``): one sign-in at ``/staff/login``
serves these pages and the alerts pages; the old ``/grading/login`` redirects there."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Form, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from learnloop.errors import InvalidInput, LearnloopError
from platform_api import _grading_review, _web
from platform_api._models import Course
from platform_api._schemas import (
    AiGradeAccept,
    AiGradeOverride,
    GradingAgreementPublic,
    GradingQueuePublic,
    SubmissionPublic,
)
from platform_api.deps import CurrentUser, Pagination, SessionDep, SettingsDep
from platform_api.policy import Principal

router = APIRouter(tags=["grading"])
pages = APIRouter(prefix="/grading", include_in_schema=False)
Window = Annotated[int, Query(ge=2, le=1000, description="Decisions per prompt in the rolling QWK")]


# --- JSON API ---------------------------------------------------------------------------------------
@router.get("/courses/{course_id}/grading-queue", response_model=GradingQueuePublic,
            summary="Essays waiting for a staff decision, most urgent first (course staff)")
def grading_queue(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination,
                  window: Window = _grading_review.AGREEMENT_WINDOW) -> Any:
    """Undecided essay submissions (course staff only): needs-manual-grading first, then AI suggestions the
    model flagged for review, least confident first, then those still waiting for the AI. `agreement` is the
    rolling AI-vs-instructor QWK over the last `window` decisions per prompt."""
    return _grading_review.grading_queue(session=session, actor=actor, course_id=course_id, limit=page.limit,
                                         offset=page.offset, window=window)


@router.get("/courses/{course_id}/grading-agreement", response_model=GradingAgreementPublic,
            summary="How often staff agree with the AI: rolling QWK per prompt (course staff)")
def grading_agreement(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser,
                      window: Window = _grading_review.AGREEMENT_WINDOW) -> Any:
    """AI-vs-instructor quadratic weighted kappa over the last `window` decisions per prompt (course staff)."""
    return _grading_review.agreement(session=session, actor=actor, course_id=course_id, window=window)


@router.post("/submissions/{submission_id}/ai-grade/accept", response_model=SubmissionPublic,
             summary="Accept the AI's suggested grade as the final grade (course staff)")
def accept_ai_grade(submission_id: uuid.UUID, session: SessionDep, actor: CurrentUser, settings: SettingsDep,
                    body: Annotated[AiGradeAccept | None, Body()] = None) -> Any:
    """Make the AI suggestion the final grade; the learner sees it labelled "AI-assisted". The body is optional
    (`{"feedback": "…"}` adds a note for the learner)."""
    return _grading_review.accept_ai_grade(session=session, actor=actor, submission_id=submission_id,
                                           data=body or AiGradeAccept(), settings=settings)


@router.post("/submissions/{submission_id}/ai-grade/override", response_model=SubmissionPublic,
             summary="Set the final grade yourself instead of the AI's (course staff)")
def override_ai_grade(submission_id: uuid.UUID, body: AiGradeOverride, session: SessionDep, actor: CurrentUser,
                      settings: SettingsDep) -> Any:
    """Set the final score yourself (also for essays that need manual grading). A score that differs from the
    AI suggestion needs a `comment` for the learner."""
    return _grading_review.override_ai_grade(session=session, actor=actor, submission_id=submission_id, data=body,
                                             settings=settings)


# --- the review pages (sign-in and layout: platform_api._web) -------------------------------------------
@pages.get("/login")
def login_page(request: Request) -> Response:
    """The old sign-in URL: the one staff sign-in now (keeps ``next``)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{_web.LOGIN}{query}", status_code=status.HTTP_303_SEE_OTHER)


@pages.post("/login")
def login_submit() -> Response:
    # 307 keeps the method and the form body: an old bookmarked form still signs in.
    return RedirectResponse(_web.LOGIN, status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@pages.post("/logout")
def logout() -> Response:
    return RedirectResponse(f"{_web.PREFIX}/logout", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@pages.get("")
def home(request: Request, session: SessionDep) -> Response:
    """The old course list: the staff home lists the grading queues now (learners: their grades)."""
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request)
    return RedirectResponse(_web.landing(session, actor), status_code=status.HTTP_303_SEE_OTHER)


PAGE_ROWS = 200  # essays per page of the queue; the page links to the next ones


@pages.get("/courses/{course_id}")
def queue_page(course_id: uuid.UUID, request: Request, session: SessionDep,
               done: str | None = None, error: str | None = None,
               offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> Response:
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request)
    try:
        queue = _grading_review.grading_queue(session=session, actor=actor, course_id=course_id, limit=PAGE_ROWS,
                                              offset=offset)
    except LearnloopError as exc:
        return _web.error_page(request, exc, actor.user)
    course = session.get(Course, course_id)
    return _web.render(request, "grading/queue.html", {"user": actor.user, "course": course, "queue": queue,
                                                       "done": done, "error": error, "page_rows": PAGE_ROWS})


def _decide(request: Request, session, course_id: uuid.UUID, form: list[tuple[str, str]], action) -> Response:
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request, form)
    target = f"/grading/courses/{course_id}"
    try:
        _web.check_same_origin(request)
    except LearnloopError as exc:
        return _web.error_page(request, exc, actor.user)
    try:
        message = action(actor)
    except LearnloopError as exc:
        return RedirectResponse(f"{target}?error={quote(exc.message)}", status_code=status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"{target}?done={quote(message)}", status_code=status.HTTP_303_SEE_OTHER)


@pages.post("/submissions/{submission_id}/accept")
def accept_form(submission_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep,
                form: _web.PostedForm, course_id: Annotated[uuid.UUID, Form()], feedback: Annotated[str, Form(max_length=100_000)] = ""
                ) -> Response:
    def action(actor: Principal) -> str:
        result = _grading_review.accept_ai_grade(session=session, actor=actor, submission_id=submission_id,
                                                 data=AiGradeAccept(feedback=_web.form_text(feedback)),
                                                 settings=settings, undecided_only=True)
        return f"Accepted the AI grade {result.score:g}/{result.max_score:g} (the learner sees it as AI-assisted)."

    return _decide(request, session, course_id, form, action)


@pages.post("/submissions/{submission_id}/override")
def override_form(submission_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep,
                  form: _web.PostedForm, course_id: Annotated[uuid.UUID, Form()], score: Annotated[str, Form(max_length=20)] = "",
                  comment: Annotated[str, Form(max_length=100_000)] = "") -> Response:
    def action(actor: Principal) -> str:
        try:
            data = AiGradeOverride(score=float(score), comment=_web.form_text(comment))
        except (ValueError, ValidationError):  # the comment is clean text here: only the score can be refused
            raise InvalidInput(f"Score {score!r} is not a number of points from 0 up; type the final score") from None
        result = _grading_review.override_ai_grade(session=session, actor=actor, submission_id=submission_id,
                                                   data=data, settings=settings, undecided_only=True)
        return f"Saved your grade {result.score:g}/{result.max_score:g}."

    return _decide(request, session, course_id, form, action)


@pages.get("/my-grades")
def my_grades(request: Request, session: SessionDep) -> Response:
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request)
    rows = _grading_review.my_submissions(session=session, actor=actor)
    return _web.render(request, "grading/my_grades.html", {"user": actor.user, "rows": rows})
