from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from platform_api import _content
from platform_api._schemas import ContentCreate, ContentListPublic, ContentPublic, ContentUpdate
from platform_api.deps import CurrentUser, Pagination, SessionDep, SettingsDep

router = APIRouter(tags=["content"])


@router.post("/content", response_model=ContentPublic, status_code=status.HTTP_201_CREATED)
def create_content(body: ContentCreate, session: SessionDep, settings: SettingsDep, actor: CurrentUser) -> Any:
    return _content.create_content(session=session, settings=settings, actor=actor, data=body)


@router.get("/content/{content_id}", response_model=ContentPublic)
def get_content(content_id: uuid.UUID, session: SessionDep, actor: CurrentUser,
                version: Annotated[int | None, Query(ge=1, le=1_000_000, description="An older version")] = None
                ) -> Any:
    return _content.get_content(session=session, actor=actor, content_id=content_id, version=version)


@router.put("/content/{content_id}", response_model=ContentPublic, summary="Save a new version")
def update_content(content_id: uuid.UUID, body: ContentUpdate, session: SessionDep, settings: SettingsDep,
                   actor: CurrentUser) -> Any:
    return _content.update_content(session=session, settings=settings, actor=actor, content_id=content_id,
                                   data=body)


@router.get("/courses/{course_id}/content", response_model=ContentListPublic)
def list_course_content(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination) -> Any:
    rows, count = _content.list_course_content(session=session, actor=actor, course_id=course_id,
                                               limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count, "limit": page.limit, "offset": page.offset}
