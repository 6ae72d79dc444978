from __future__ import annotations

from fastapi import APIRouter

from platform_api import _users
from platform_api._schemas import LoginRequest, RefreshRequest, TokenPair
from platform_api.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=TokenPair, summary="Exchange email + password for JWTs")
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    """The access token carries `user_id`, `roles`, `permissions` and `exp`; use the refresh token to renew it."""
    return _users.login(session=session, settings=settings, email=body.email, password=body.password)


@router.post("/refresh", response_model=TokenPair, summary="Exchange a refresh token for a new token pair")
def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    return _users.refresh(session=session, settings=settings, refresh_token=body.refresh_token)
