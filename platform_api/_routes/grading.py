"""AI-assisted grading review: the JSON API under ``/api/v1`` and the server-rendered review page under
``/grading`` (login with the API's credentials; the access token travels in an HttpOnly, SameSite=Strict cookie,
so the page's plain HTML forms need no JavaScript and cannot be posted from another site)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from learnloop.errors import InvalidInput, LearnloopError, PermissionDenied
from platform_api import _grading_review, _users, policy
from platform_api._models import Course, User
from platform_api._schemas import (
    AiGradeAccept,
    AiGradeOverride,
    GradingAgreementPublic,
    GradingQueuePublic,
    SubmissionPublic,
)
from platform_api._security import TokenType, Unauthenticated, decode_token
from platform_api.data import UserStatus
from platform_api.deps import CurrentUser, Pagination, SessionDep, SettingsDep
from platform_api.policy import Principal

router = APIRouter(tags=["grading"])
pages = APIRouter(prefix="/grading", include_in_schema=False)

COOKIE = "learnloop_review_token"
Window = Annotated[int, Query(ge=2, le=1000, description="Decisions per prompt in the rolling QWK")]


# --- JSON API ---------------------------------------------------------------------------------------
@router.get("/courses/{course_id}/grading-queue", response_model=GradingQueuePublic)
def grading_queue(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination,
                  window: Window = _grading_review.AGREEMENT_WINDOW) -> Any:
    """Undecided essay submissions (course staff only): needs-manual-grading first, then AI suggestions the
    model flagged for review, least confident first, then those still waiting for the AI. `agreement` is the
    rolling AI-vs-instructor QWK over the last `window` decisions per prompt."""
    return _grading_review.grading_queue(session=session, actor=actor, course_id=course_id, limit=page.limit,
                                         offset=page.offset, window=window)


@router.get("/courses/{course_id}/grading-agreement", response_model=GradingAgreementPublic)
def grading_agreement(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser,
                      window: Window = _grading_review.AGREEMENT_WINDOW) -> Any:
    """AI-vs-instructor quadratic weighted kappa over the last `window` decisions per prompt (course staff)."""
    return _grading_review.agreement(session=session, actor=actor, course_id=course_id, window=window)


@router.post("/submissions/{submission_id}/ai-grade/accept", response_model=SubmissionPublic)
def accept_ai_grade(submission_id: uuid.UUID, body: AiGradeAccept, session: SessionDep, actor: CurrentUser,
                    settings: SettingsDep) -> Any:
    """Make the AI suggestion the final grade; the learner sees it labelled "AI-assisted"."""
    return _grading_review.accept_ai_grade(session=session, actor=actor, submission_id=submission_id, data=body,
                                           settings=settings)


@router.post("/submissions/{submission_id}/ai-grade/override", response_model=SubmissionPublic)
def override_ai_grade(submission_id: uuid.UUID, body: AiGradeOverride, session: SessionDep, actor: CurrentUser,
                      settings: SettingsDep) -> Any:
    """Set the final score yourself (also for essays that need manual grading). A score that differs from the
    AI suggestion needs a `comment` for the learner."""
    return _grading_review.override_ai_grade(session=session, actor=actor, submission_id=submission_id, data=body,
                                             settings=settings)


# --- the review page ----------------------------------------------------------------------------------
_environment: Environment | None = None


def _templates() -> Environment:
    global _environment
    if _environment is None:
        # A path, not PackageLoader: under pytest `platform_api` can resolve to the tests/platform_api namespace.
        _environment = Environment(loader=FileSystemLoader(Path(__file__).parents[1] / "templates"),
                                   autoescape=select_autoescape(["html"]))
    return _environment


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates().get_template(name).render(**context), status_code=status_code)


def _page_principal(request: Request, session, settings) -> Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        claims = decode_token(settings=settings, token=token, expected=TokenType.access)
        user = session.get(User, uuid.UUID(str(claims["sub"])))
    except (Unauthenticated, ValueError):
        return None
    if user is None or user.status is not UserStatus.active:
        return None
    return policy.load_principal(session, user)


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/grading/login?next={quote(request.url.path)}", status_code=status.HTTP_303_SEE_OTHER)


def _safe_next(value: str | None) -> str:
    # Only same-site paths: never an open redirect to another host.
    return value if value and value.startswith("/grading") and not value.startswith("//") else "/grading"


@pages.get("/login")
def login_page(next: str | None = None) -> HTMLResponse:
    return _render("grading/login.html", next=_safe_next(next), error=None, email="")


@pages.post("/login")
def login_submit(session: SessionDep, settings: SettingsDep, email: Annotated[str, Form(max_length=320)] = "",
                 password: Annotated[str, Form(max_length=128)] = "",
                 next: Annotated[str, Form(max_length=500)] = "/grading") -> Response:
    try:
        tokens = _users.login(session=session, settings=settings, email=email.strip().lower(), password=password)
    except LearnloopError as exc:
        return _render("grading/login.html", status_code=401, next=_safe_next(next), error=exc.message, email=email)
    response = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(COOKIE, tokens.access_token, httponly=True, samesite="strict", path="/grading",
                        secure=settings.env == "production", max_age=settings.access_token_minutes * 60)
    return response


@pages.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/grading/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/grading")
    return response


@pages.get("")
def home(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    actor = _page_principal(request, session, settings)
    if actor is None:
        return _to_login(request)
    courses = _grading_review.staff_courses(session=session, actor=actor)
    return _render("grading/home.html", user=actor.user, courses=courses)


@pages.get("/courses/{course_id}")
def queue_page(course_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep,
               done: str | None = None, error: str | None = None) -> Response:
    actor = _page_principal(request, session, settings)
    if actor is None:
        return _to_login(request)
    try:
        queue = _grading_review.grading_queue(session=session, actor=actor, course_id=course_id, limit=200)
    except LearnloopError as exc:
        code = 403 if isinstance(exc, PermissionDenied) else 404
        return _render("grading/error.html", status_code=code, user=actor.user, message=exc.message)
    course = session.get(Course, course_id)
    return _render("grading/queue.html", user=actor.user, course=course, queue=queue, done=done, error=error)


def _decide(request: Request, session, settings, course_id: uuid.UUID, action) -> Response:
    actor = _page_principal(request, session, settings)
    if actor is None:
        return _to_login(request)
    target = f"/grading/courses/{course_id}"
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is not None:
        parsed = urlsplit(source)
        if f"{parsed.scheme}://{parsed.netloc}" != f"{request.url.scheme}://{request.url.netloc}":
            return _render("grading/error.html", status_code=403, user=actor.user,
                           message="This form must be sent from the learnloop grading page")
    try:
        message = action(actor)
    except LearnloopError as exc:
        return RedirectResponse(f"{target}?error={quote(exc.message)}", status_code=status.HTTP_303_SEE_OTHER)
    return RedirectResponse(f"{target}?done={quote(message)}", status_code=status.HTTP_303_SEE_OTHER)


@pages.post("/submissions/{submission_id}/accept")
def accept_form(submission_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep,
                course_id: Annotated[uuid.UUID, Form()], feedback: Annotated[str, Form(max_length=100_000)] = ""
                ) -> Response:
    def action(actor: Principal) -> str:
        result = _grading_review.accept_ai_grade(session=session, actor=actor, submission_id=submission_id,
                                                 data=AiGradeAccept(feedback=feedback), settings=settings)
        return f"Accepted the AI grade {result.score:g}/{result.max_score:g} (the learner sees it as AI-assisted)."

    return _decide(request, session, settings, course_id, action)


@pages.post("/submissions/{submission_id}/override")
def override_form(submission_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep,
                  course_id: Annotated[uuid.UUID, Form()], score: Annotated[str, Form(max_length=20)] = "",
                  comment: Annotated[str, Form(max_length=100_000)] = "") -> Response:
    def action(actor: Principal) -> str:
        try:
            data = AiGradeOverride(score=float(score), comment=comment)
        except (ValueError, ValidationError):
            raise InvalidInput(f"Score {score!r} is not a number of points from 0 up; type the final score") from None
        result = _grading_review.override_ai_grade(session=session, actor=actor, submission_id=submission_id,
                                                   data=data, settings=settings)
        return f"Saved your grade {result.score:g}/{result.max_score:g}."

    return _decide(request, session, settings, course_id, action)


@pages.get("/my-grades")
def my_grades(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    actor = _page_principal(request, session, settings)
    if actor is None:
        return _to_login(request)
    rows = _grading_review.my_submissions(session=session, actor=actor)
    return _render("grading/my_grades.html", user=actor.user, rows=rows)
