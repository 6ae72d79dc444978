"""Server-rendered staff and learner pages: one sign-in for all of them, one layout, the staff home.

Sign-in posts email + password to ``/staff/login``, which calls the same ``_users.login`` as
``POST /api/v1/auth/login`` and stores the access token in **one** HttpOnly, ``SameSite=Strict`` cookie with
``path=/``, so the alerts pages (``/staff``) and the grading review and learner pages (``/grading``) share it
(scripts cannot read it; other sites cannot make the browser send it; the JSON API ignores it, it reads bearer
tokens only). Forms that change state also check that ``Origin`` (or ``Referer``) is this site. Pages authorize
with exactly the API's policy: the cookie's token resolves to the same ``Principal`` a bearer token would.

After signing in, staff land on ``/staff/courses`` (their courses with links to each grading queue and alerts
list, with counts) and learners on ``/grading/my-grades``, unless the sign-in was for a specific page
(``next``). The old ``/grading/login`` and ``/grading`` URLs redirect here. Page routes reuse
:func:`page_principal`, :func:`to_login`, :func:`render`, :func:`error_page` and :func:`check_same_origin`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from learnloop.errors import InvalidInput, LearnloopError, PermissionDenied
from platform_api import _alerts, _errors, _grading_review, _users, policy
from platform_api._models import Course, Submission, User
from platform_api._security import TokenType, decode_token
from platform_api.data import CourseStatus, ScopeType, UserRole
from platform_api.deps import SessionDep, SettingsDep
from platform_api.policy import Permission, Principal, Scope

PREFIX = "/staff"
COOKIE = "learnloop_staff_token"
COOKIE_PATH = "/"  # one cookie for /staff and /grading
LOGIN = f"{PREFIX}/login"
HOME = f"{PREFIX}/courses"
MY_GRADES = "/grading/my-grades"
# Cookies of the two earlier sign-ins (each scoped to its own pages): cleared on sign-in and sign-out.
_LEGACY_COOKIES = (("learnloop_staff_token", PREFIX), ("learnloop_review_token", "/grading"))
_PAGE_ROOTS = (PREFIX, "/grading", "/operator")
_env = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


class InvalidForm(InvalidInput):
    """A form field the page cannot accept (rendered as a 422 page that says what to fix)."""


def page_principal(request: Request, session: Session) -> Principal | None:
    """The signed-in caller from the cookie, or None (no cookie, expired or invalid token, inactive user)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        user = _users.authenticate(session=session, settings=request.app.state.settings, token=token,
                                   expected=TokenType.access)
    except LearnloopError:
        return None
    return policy.load_principal(session, user)


def safe_next(target: str | None) -> str | None:
    """``target`` when it is one of our own pages, else None: never an absolute or protocol-relative URL."""
    if not target or target.startswith("//") or "\\" in target or any(c in target for c in "\r\n"):
        return None
    path = urlsplit(target).path
    if any(path == root or path.startswith(root + "/") for root in _PAGE_ROOTS) and path != LOGIN:
        return target
    return None


RESUME_PREFIX = "resume."  # sign-in form fields that carry a posted form across an expired sign-in


async def posted_form(request: Request) -> list[tuple[str, str]]:
    """A page form's text fields as posted (parsed once: FastAPI's ``Form`` parameters read the same form)."""
    form = await request.form()
    return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]


PostedForm = Annotated[list[tuple[str, str]], Depends(posted_form)]


def form_text(value: str) -> str:
    """A free-text form field as it can be stored: NUL characters (pasted along from some documents, invisible on
    the page, refused by PostgreSQL text) are dropped instead of failing the whole decision."""
    return value.replace("\x00", "")


def to_login(request: Request, form: list[tuple[str, str]] | None = None) -> Response:
    """Send a caller who is not signed in (or whose sign-in expired) to sign in, then back.

    A page (GET) is a redirect with ``next``. A posted form (``form``: its fields) is not lost: the sign-in page
    carries the fields, and after signing in the browser posts them again to the same address (the page
    ``staff_resume.html``), so a grading decision, an alert outcome or a plan typed over a long session is saved
    then, not dropped."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if form is None:
        return RedirectResponse(f"{LOGIN}?next={quote(target, safe='')}", status_code=303)
    if not _posted_from_our_pages(request):
        # Only a form our own page sent is carried: a post from another site (it never carries the SameSite
        # cookie, so it always lands here) must not become a change the next person to sign in makes.
        return RedirectResponse(LOGIN, status_code=303)
    return render(request, "staff_login.html", {
        "next": "", "email": "", "resume_action": target, "resume": form,
        "error": "Your sign-in has expired. Sign in again and your change is sent then; nothing was saved yet."},
        status_code=401)


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page in the shared layout; ``user`` (or ``actor``, the signed-in ``User``) shows the nav and sign-out."""
    user = context.get("user", context.get("actor"))
    html = _env.get_template(template).render(**{"prefix": PREFIX, "request": request, "home": HOME,
                                                 "my_grades": MY_GRADES, **context, "user": user})
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def error_page(request: Request, exc: LearnloopError, user: User | None = None) -> HTMLResponse:
    status, _ = _errors._status_for(exc)
    return render(request, "staff_error.html", {"status": status, "message": exc.message, "user": user},
                  status_code=status)


def page_error(request: Request, status: int, message: str) -> HTMLResponse:
    """The error page for a request the routes never saw (a malformed id in a page's URL, an unknown page): set as
    ``app.state.page_error`` for ``_errors``."""
    return render(request, "staff_error.html", {"status": status, "message": message, "user": None},
                  status_code=status)


def _posted_from_our_pages(request: Request) -> bool:
    """The request says (``Origin``, else ``Referer``) that one of this site's pages sent it; an unknown source
    is not."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parsed = urlsplit(source)
    return f"{parsed.scheme}://{parsed.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing form post that another site made the browser send."""
    if not (request.headers.get("origin") or request.headers.get("referer")):
        return  # SameSite=Strict already kept the cookie off cross-site requests
    if not _posted_from_our_pages(request):
        raise PermissionDenied("This form must be sent from the learnloop pages")


# --------------------------------------------------------------------------- the staff home
@dataclass(frozen=True)
class StaffCourse:
    """One row of the staff home: what the caller may open in the course, and what is waiting there."""

    course: Course
    can_grade: bool
    essays_waiting: int
    open_alerts: int
    is_staff: bool = True  # False: a content editor (creator role), who gets the course plan only


def staff_courses(session: Session, actor: Principal) -> list[StaffCourse]:
    """Courses the caller teaches or assists (not archived), with essays waiting and open alerts; then courses
    whose content they edit without a staff role (the plan only)."""
    courses = [course for course, _ in _alerts.staff_courses(session=session, actor=actor)]
    ids = [c.id for c in courses]
    waiting: dict[uuid.UUID, int] = {}
    if ids:
        waiting = {course: int(count) for course, count in session.execute(
            select(Submission.course_id, func.count()).where(
                Submission.course_id.in_(ids), Submission.status.in_(_grading_review.QUEUE_STATUSES))
            .group_by(Submission.course_id))}
    alerts = _alerts.open_alert_counts(session=session, course_ids=ids)
    rows = [StaffCourse(course=c, essays_waiting=waiting.get(c.id, 0), open_alerts=alerts.get(c.id, 0),
                        can_grade=policy.has_permission(session, actor, Permission.submissions_grade,
                                                        Scope.of_course(c))) for c in courses]
    editing = [c for c in session.scalars(select(Course).where(Course.status != CourseStatus.archived,
                                                              Course.id.not_in(ids) if ids else true())
                                          .order_by(Course.title, Course.id))
               if _edits_content_only(session, actor, c)]
    return rows + [StaffCourse(course=c, can_grade=False, essays_waiting=0, open_alerts=0, is_staff=False)
                   for c in editing]


def _edits_content_only(session: Session, actor: Principal, course: Course) -> bool:
    """A grant that lets the caller edit the course's content (the plan page) without making them its staff;
    admins, who may edit everything, are not listed for every course."""
    if Permission.content_update in actor.global_permissions():
        return False
    return policy.has_permission(session, actor, Permission.content_update, Scope.of_course(course))


def landing(session: Session, actor: Principal) -> str:
    """Where a sign-in without a target goes: learners to their grades, staff (and content editors) to their
    courses."""
    if actor.user.role is not UserRole.student or _alerts.staff_courses(session=session, actor=actor):
        return HOME
    if any(g.scope_type is not ScopeType.global_ for g in actor.grants) and any(  # a course-scoped creator grant
            _edits_content_only(session, actor, c)
            for c in session.scalars(select(Course).where(Course.status != CourseStatus.archived))):
        return HOME
    return MY_GRADES


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("")
def staff_root() -> Response:
    return RedirectResponse(HOME, status_code=303)


@router.get("/courses", response_class=HTMLResponse)
def staff_home(request: Request, session: SessionDep) -> Any:
    actor = page_principal(request, session)
    if actor is None:
        return to_login(request)
    operator_page = "/operator" if Permission.operator_read in actor.global_permissions() else None
    return render(request, "staff_courses.html", {"user": actor.user, "courses": staff_courses(session, actor),
                                                  "operator_page": operator_page})


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, next: str | None = None) -> Any:
    actor = page_principal(request, session)
    if actor is not None:  # already signed in
        return RedirectResponse(safe_next(next) or landing(session, actor), status_code=303)
    return render(request, "staff_login.html", {"next": safe_next(next) or "", "error": None, "email": ""})


# The sign-in form's own fields, with their limits (a longer value is refused like a wrong password).
_LOGIN_FIELDS = {"email": 320, "password": 128, "next": 2000, "resume_action": 2000}
# A carried form may be a whole course plan (two fields per item; platform_api._routes.plan.FORM_FIELDS).
RESUME_MAX_FIELDS = 50_000 + len(_LOGIN_FIELDS)


@router.post("/login")
async def login(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    # Read here, not through Form parameters: those parse with Starlette's default limit of 1,000 fields, and a
    # carried course plan has more.
    form = await request.form(max_fields=RESUME_MAX_FIELDS)
    fields = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
    return await run_in_threadpool(_login, request, session, settings, fields)


def _login(request: Request, session: Session, settings, fields: list[tuple[str, str]]) -> Response:
    own = {name: value for name, value in fields if name in _LOGIN_FIELDS}
    email, password = own.get("email", ""), own.get("password", "")
    target = safe_next(own.get("next"))
    # A form posted while signed out (see to_login): sent again to its own page once signed in.
    resume_to = safe_next(own.get("resume_action"))
    resume = [(name.removeprefix(RESUME_PREFIX), value) for name, value in fields
              if name.startswith(RESUME_PREFIX)] if resume_to else []
    try:
        if any(len(own.get(name, "")) > limit for name, limit in _LOGIN_FIELDS.items()):
            raise InvalidInput("A field of the sign-in form is too long")
        if resume_to and not _posted_from_our_pages(request):
            raise PermissionDenied("This form must be sent from the learnloop pages")
        tokens = _users.login(session=session, settings=settings, email=email.strip().lower(), password=password)
        claims = decode_token(settings=settings, token=tokens.access_token, expected=TokenType.access)
        user = session.get(User, uuid.UUID(str(claims["sub"])))
    except LearnloopError as exc:
        return render(request, "staff_login.html", {"next": target or "", "error": exc.message,
                                                    "email": email[:320], "resume_action": resume_to or "",
                                                    "resume": resume}, status_code=401)
    if resume_to:
        response: Response = render(request, "staff_resume.html", {"user": user, "action": resume_to,
                                                                   "fields": resume})
    else:
        response = RedirectResponse(target or landing(session, policy.load_principal(session, user)),
                                    status_code=303)
    for name, path in _LEGACY_COOKIES:
        response.delete_cookie(name, path=path)
    response.set_cookie(COOKIE, tokens.access_token, max_age=settings.access_token_minutes * 60, path=COOKIE_PATH,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse(LOGIN, status_code=303)
    for name, path in _LEGACY_COOKIES:
        response.delete_cookie(name, path=path)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
