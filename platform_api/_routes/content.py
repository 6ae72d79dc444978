from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status
from fastapi.responses import FileResponse

from platform_api import _content, _media
from platform_api._schemas import (
    ContentCreate,
    ContentListPublic,
    ContentPublic,
    ContentUpdate,
    StreamingUrlPublic,
    TranscodeJobPublic,
)
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


@router.delete("/content/{content_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               summary="Delete an item (with its versions); it leaves search and recommendations")
def delete_content(content_id: uuid.UUID, session: SessionDep, settings: SettingsDep, actor: CurrentUser) -> Response:
    """Emits `content.deleted`; the search indexer removes the item. Learners' past opens stay in the event
    history. To keep an item but take it out of the course plan, `PUT` it with `"planned_week": null`."""
    _content.delete_content(session=session, settings=settings, actor=actor, content_id=content_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/courses/{course_id}/content", response_model=ContentListPublic)
def list_course_content(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination) -> Any:
    rows, count = _content.list_course_content(session=session, actor=actor, course_id=course_id,
                                               limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count, "limit": page.limit, "offset": page.offset}


@router.post("/content/{content_id}/transcode", response_model=TranscodeJobPublic,
             status_code=status.HTTP_202_ACCEPTED, responses={501: {"description": "ffmpeg is not installed"}})
def transcode(content_id: uuid.UUID, request: Request, background: BackgroundTasks, session: SessionDep,
              settings: SettingsDep, actor: CurrentUser) -> Any:
    """Start an HLS transcode (360p + 720p, or AAC for audio); poll the job for its status."""
    job = _media.request_transcode(session=session, settings=settings, actor=actor, content_id=content_id)
    background.add_task(_media.run_transcode, sessions=request.app.state.sessions, settings=settings, job_id=job.id)
    return job


@router.get("/content/{content_id}/transcode/{job_id}", response_model=TranscodeJobPublic,
            summary="Progress of a transcoding job")
def transcode_status(content_id: uuid.UUID, job_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _media.get_job(session=session, actor=actor, content_id=content_id, job_id=job_id)


@router.get("/content/{content_id}/streaming-url", response_model=StreamingUrlPublic,
            summary="A signed, expiring URL to stream the item's media")
def streaming_url(content_id: uuid.UUID, session: SessionDep, settings: SettingsDep, actor: CurrentUser) -> Any:
    """A signed URL valid for 10 minutes: the HLS master playlist once transcoded, else the original file."""
    url, expires = _media.streaming_url(session=session, settings=settings, actor=actor, content_id=content_id)
    return StreamingUrlPublic(url=url, expires_at=expires)


@router.get("/content/{content_id}/stream/{file:path}", include_in_schema=False)
def stream(content_id: uuid.UUID, file: Annotated[str, Path(pattern=r"^[A-Za-z0-9._/-]{1,300}$")],
           session: SessionDep, settings: SettingsDep, expires: Annotated[int, Query(ge=0, le=2**40)],
           sig: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]) -> Response:
    path, query = _media.resolve_stream(session=session, settings=settings, content_id=content_id, file=file,
                                        expires=expires, sig=sig)
    if query is not None:
        return Response(_media.signed_playlist(path, query), media_type="application/vnd.apple.mpegurl")
    return FileResponse(path)
