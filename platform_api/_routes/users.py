from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from platform_api import _assessments, _courses, _users
from platform_api._schemas import (
    EnrollmentsPublic,
    PermissionsPublic,
    RoleGrantCreate,
    RoleGrantPublic,
    UserAssessmentsPublic,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
)
from platform_api.data import UserRole, UserStatus
from platform_api.deps import CurrentUser, Pagination, SessionDep, SettingsDep, require
from platform_api.policy import Permission, Principal

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, session: SessionDep,
                actor: Annotated[Principal, require(Permission.users_create)]) -> Any:
    return _users.create_user(session=session, actor=actor, data=body)


@router.get("", response_model=UsersPublic)
def list_users(session: SessionDep, page: Pagination, actor: Annotated[Principal, require(Permission.users_list)],
               role: UserRole | None = None, status: UserStatus | None = None) -> Any:
    rows, count = _users.list_users(session=session, actor=actor, role=role, status=status, limit=page.limit,
                                    offset=page.offset)
    return UsersPublic(data=[UserPublic.model_validate(r) for r in rows], count=count, limit=page.limit,
                       offset=page.offset)


@router.get("/{user_id}", response_model=UserPublic)
def get_user(user_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _users.get_user(session=session, actor=actor, user_id=user_id)


@router.put("/{user_id}", response_model=UserPublic)
def update_user(user_id: uuid.UUID, body: UserUpdate, session: SessionDep, actor: CurrentUser) -> Any:
    """Update a profile (yourself, or anyone as an admin).

    A new `password` ends every session of the user, this one included: all access and refresh tokens issued
    before the change are refused with 401, and the response carries no new tokens — sign in again with
    `POST /api/v1/auth/login`. `metadata` keys that decide access (`institution_id`, `id_student`) are set by
    admins only: a user's own update keeps them as stored, and changing them is refused with 403."""
    return _users.update_user(session=session, actor=actor, user_id=user_id, data=body)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="GDPR erasure: remove personal fields, pseudonymise events")
def erase_user(user_id: uuid.UUID, session: SessionDep, settings: SettingsDep, actor: CurrentUser) -> Response:
    _users.erase_user(session=session, settings=settings, actor=actor, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{user_id}/export", summary="GDPR export: everything held about the user, as JSON")
def export_user(user_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> dict[str, Any]:
    return _users.export_user(session=session, actor=actor, user_id=user_id)


@router.post("/{user_id}/roles", response_model=RoleGrantPublic, status_code=status.HTTP_201_CREATED,
             summary="Grant a role, globally or scoped to a course or institution")
def assign_role(user_id: uuid.UUID, body: RoleGrantCreate, session: SessionDep, actor: CurrentUser) -> Any:
    return _users.assign_role(session=session, actor=actor, user_id=user_id, data=body)


@router.get("/{user_id}/permissions", response_model=PermissionsPublic,
            summary="What the user may do: roles and permissions with their scopes")
def user_permissions(user_id: uuid.UUID, session: SessionDep, actor: CurrentUser,
                     course_id: Annotated[uuid.UUID | None, Query(description="Scope the answer to a course")]
                     = None) -> Any:
    return _users.user_permissions(session=session, actor=actor, user_id=user_id, course_id=course_id)


@router.get("/{user_id}/enrollments", response_model=EnrollmentsPublic)
def user_enrollments(user_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination) -> Any:
    rows, count = _courses.list_user_enrollments(session=session, actor=actor, user_id=user_id,
                                                 limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count, "limit": page.limit, "offset": page.offset}


@router.get("/{user_id}/assessments", response_model=UserAssessmentsPublic,
            summary="Assessments of the user's courses with their latest submission and final score")
def user_assessments(user_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination) -> Any:
    rows, count = _assessments.list_user_assessments(session=session, actor=actor, user_id=user_id,
                                                     limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count, "limit": page.limit, "offset": page.offset}
