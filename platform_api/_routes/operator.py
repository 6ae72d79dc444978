"""The operator page of ``pipelines.monitoring`` mounted under ``/operator``, for operators and admins only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.exceptions import HTTPException as StarletteHTTPException

from learnloop.settings import Settings
from pipelines.monitoring.api import operator_router
from platform_api import _web, policy
from platform_api._security import Unauthenticated
from platform_api.deps import SessionDep, SettingsDep, bearer_credentials, get_current_principal
from platform_api.policy import Permission, Principal

PREFIX = "/operator"


def _operator(request: Request, session: SessionDep, settings: SettingsDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_credentials)]) -> Principal:
    """The caller from a bearer token (scripts, Prometheus) or the pages' sign-in cookie (a browser), holding
    ``operator:read``. A browser that is not signed in is sent to the sign-in page and back; only GETs are served
    here, so the cookie needs no origin check."""
    if credentials is not None:
        principal = get_current_principal(request, session, settings, credentials)
    else:
        principal = _web.page_principal(request, session)
        if principal is None:
            if request.url.path == PREFIX and "text/html" in request.headers.get("accept", ""):
                raise StarletteHTTPException(303, headers={"Location": _web.to_login(request).headers["location"]})
            raise Unauthenticated("Sign in at /staff/login, or send 'Authorization: Bearer <access_token>' from "
                                  "POST /api/v1/auth/login")
    policy.require_global(principal, Permission.operator_read)
    return principal


def build_router(settings: Settings, services: Callable[[], list[dict[str, Any]]] | None = None,
                 served: Callable[[], list[dict[str, Any]]] | None = None) -> APIRouter:
    """Every route of the page (HTML, JSON status, saved reports, metrics) needs ``operator:read``, from a bearer
    token or the staff pages' sign-in.

    The page links to ``/operator/...`` itself, so it is mounted at the root with that prefix, not under
    ``/api/v1``. Without a live registry callback the page shows the snapshot of the last ``learnloop drift
    check`` (the platform API imports no registry). ``services`` gives the page's service health rows, ``served``
    what the model service serves of each model (its ``/admin/models``).
    """
    router = APIRouter(dependencies=[Depends(_operator)])
    router.include_router(operator_router(settings=settings, prefix=PREFIX, services=services, served=served))
    return router
