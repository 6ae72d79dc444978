"""The one place where domain errors become HTTP responses (JSON bodies that say what to fix)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from learnloop.errors import Conflict, InvalidInput, LearnloopError, NotFound, PermissionDenied, Unavailable
from platform_api._security import Unauthenticated

log = logging.getLogger("platform_api.errors")


class NotImplementedHere(Unavailable):
    """A feature that needs a missing system tool on this machine (mapped to 501)."""


# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: list[tuple[type[LearnloopError], int, str]] = [
    (Unauthenticated, 401, "unauthenticated"),
    (PermissionDenied, 403, "permission_denied"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (InvalidInput, 422, "invalid_input"),
    (NotImplementedHere, 501, "not_implemented"),
    (Unavailable, 503, "unavailable"),
]


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def error_response(request: Request, status: int, code: str, message: str, details=None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}, "request_id": _request_id(request)}
    return JSONResponse(body, status_code=status, headers=headers)


def _status_for(exc: LearnloopError) -> tuple[int, str]:
    for error_type, status, code in STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status, code
    return 400, "bad_request"


async def _domain_error(request: Request, exc: LearnloopError) -> Response:
    status, code = _status_for(exc)
    # A browser on a page whose route let the error through (the operator page's sign-in check refusing a learner)
    # gets the error page, not a JSON body.
    page = _page_error(request, status, exc.message)
    if page is not None:
        return page
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(request, status, code, exc.message, exc.details, headers)


def _describe(errors: list[dict]) -> tuple[str, list[dict]]:
    clean = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        clean.append({"loc": location, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))})
    summary = "; ".join(f"{'.'.join(e['loc'][1:] or e['loc'])}: {e['msg']}" for e in clean[:5])
    return f"The request is invalid ({summary}); fix these fields and retry", clean


PAGE_ROOTS = ("/staff", "/grading", "/operator")  # server-rendered pages: a browser gets an error page there


def _page_error(request: Request, status: int, message: str) -> Response | None:
    """The HTML error page for a browser on one of the pages (``app.state.page_error``, set by the app), else None
    (the JSON error)."""
    render = getattr(request.app.state, "page_error", None)
    path = request.url.path
    if (render is None or status < 400 or "text/html" not in request.headers.get("accept", "")
            or not any(path == root or path.startswith(root + "/") for root in PAGE_ROOTS)):
        return None
    return render(request, status, message)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    message, details = _describe(list(exc.errors()))
    return _page_error(request, 422, message) or error_response(request, 422, "invalid_input", message, details)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    messages = {404: "No such endpoint; see /docs for the API", 405: "Method not allowed on this endpoint"}
    message = messages.get(exc.status_code, str(exc.detail))
    if exc.status_code == 404:
        page = _page_error(request, 404, "No such page; go back to your courses")
        if page is not None:
            return page
    return error_response(request, exc.status_code, f"http_{exc.status_code}", message,
                          headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal_error",
                          f"Something went wrong on our side; report request id {_request_id(request)}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(LearnloopError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
