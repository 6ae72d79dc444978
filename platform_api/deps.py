"""FastAPI dependencies as ``Annotated`` aliases: ``SessionDep``, ``SettingsDep``, ``CurrentUser``, ``require``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from learnloop.settings import Settings
from platform_api import _users, policy
from platform_api._security import TokenType, Unauthenticated
from platform_api.policy import Permission, Principal


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Async on purpose: opening a Session does no I/O, and a sync generator dependency would cost two
    # thread-pool hops per request. The (sync) routes then use it from the worker thread, one at a time.
    session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]

bearer_credentials = HTTPBearer(auto_error=False, description="Access token from POST /api/v1/auth/login")


def get_current_principal(request: Request, session: SessionDep, settings: SettingsDep,
                          credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                 Depends(bearer_credentials)]) -> Principal:
    if credentials is None:
        raise Unauthenticated("Log in with POST /api/v1/auth/login and send 'Authorization: Bearer <access_token>'")
    user = _users.authenticate(session=session, settings=settings, token=credentials.credentials,
                               expected=TokenType.access)
    return policy.load_principal(session, user)


CurrentUser = Annotated[Principal, Depends(get_current_principal)]


def require(permission: Permission):
    """Dependency that admits only callers holding ``permission`` globally: ``Annotated[Principal, require(...)]``."""

    def _check(principal: CurrentUser) -> Principal:
        policy.require_global(principal, permission)
        return principal

    return Depends(_check)


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def _page(limit: Annotated[int, Query(ge=1, le=200, description="Page size")] = 50,
          offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip")] = 0) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(_page)]
