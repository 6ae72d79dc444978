"""Server-rendered staff pages (under ``/staff``): sign-in with the API's JWT kept in a cookie, and rendering.

Sign-in posts email + password to ``/staff/login``, which calls the same ``_users.login`` as
``POST /api/v1/auth/login`` and stores the access token in an HttpOnly, ``SameSite=Strict`` cookie scoped to
``/staff`` (scripts cannot read it; other sites cannot make the browser send it). Forms that change state also
check that ``Origin`` (or ``Referer``) is this site. Pages then authorize with exactly the API's policy: the
cookie's token resolves to the same ``Principal`` a bearer token would. Any staff page can reuse
:func:`page_principal`, :func:`to_login`, :func:`render` and :func:`error_page`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from learnloop.errors import InvalidInput, LearnloopError, PermissionDenied
from platform_api import _errors, _users, policy
from platform_api._models import User
from platform_api._security import TokenType, decode_token
from platform_api.data import UserStatus
from platform_api.deps import SessionDep, SettingsDep
from platform_api.policy import Principal

PREFIX = "/staff"
COOKIE = "learnloop_staff_token"
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
        claims = decode_token(settings=request.app.state.settings, token=token, expected=TokenType.access)
        user = session.get(User, uuid.UUID(str(claims["sub"])))
    except (LearnloopError, ValueError):
        return None
    if user is None or user.status is not UserStatus.active:
        return None
    return policy.load_principal(session, user)


def _safe_next(target: str | None) -> str:
    # Only our own staff pages: never an absolute or protocol-relative URL (open redirect).
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/courses"


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    html = _env.get_template(template).render(prefix=PREFIX, request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def error_page(request: Request, exc: LearnloopError) -> HTMLResponse:
    status, _ = _errors._status_for(exc)
    return render(request, "staff_error.html", {"status": status, "message": exc.message}, status_code=status)


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing form post that another site made the browser send."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return  # SameSite=Strict already kept the cookie off cross-site requests
    parsed = urlsplit(source)
    if f"{parsed.scheme}://{parsed.netloc}" != f"{request.url.scheme}://{request.url.netloc}":
        raise PermissionDenied("This form must be sent from the learnloop staff pages")


router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "staff_login.html", {"next": _safe_next(next), "error": None, "email": ""})


@router.post("/login")
def login(request: Request, session: SessionDep, settings: SettingsDep,
          email: Annotated[str, Form(max_length=320)], password: Annotated[str, Form(max_length=128)],
          next: Annotated[str, Form(max_length=2000)] = "") -> Response:
    target = _safe_next(next)
    try:
        tokens = _users.login(session=session, settings=settings, email=email.strip(), password=password)
    except LearnloopError as exc:
        return render(request, "staff_login.html", {"next": target, "error": exc.message, "email": email},
                      status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, tokens.access_token, max_age=settings.access_token_minutes * 60, path=PREFIX,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
