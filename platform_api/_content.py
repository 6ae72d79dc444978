"""Versioned course content (every update is a new version; old versions stay readable)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, NotFound
from learnloop.settings import Settings
from platform_api import _audit, policy
from platform_api._db import get_or_not_found, paginate
from platform_api._models import ContentItem, ContentVersion, Course
from platform_api._outbox import emit
from platform_api._schemas import ContentCreate, ContentPublic, ContentUpdate
from platform_api.policy import Permission, Principal, Scope


def media_dir(settings: Settings) -> Path:
    return settings.data_path / "media"


def resolve_media(settings: Settings, file_path: str) -> Path:
    """The media file under ``<data_dir>/media``; refuses paths that escape it."""
    root = media_dir(settings).resolve()
    candidate = (root / file_path).resolve()
    if not candidate.is_relative_to(root):
        raise InvalidInput(f"file_path must stay inside {root}; give a path relative to it",
                           details={"field": "file_path"})
    return candidate


def _course(session: Session, course_id: uuid.UUID) -> Course:
    return get_or_not_found(session, Course, course_id, "Course", "list courses with GET /api/v1/courses")


def check_planned_week(course: Course, planned_week: int | None) -> None:
    if planned_week is not None and course.duration_weeks is not None and planned_week > course.duration_weeks:
        raise InvalidInput(f"planned_week {planned_week} is after the course's last week ({course.duration_weeks}); "
                           "give a week between 1 and the course's duration_weeks",
                           details={"field": "planned_week", "duration_weeks": course.duration_weeks})


def create_content(*, session: Session, settings: Settings, actor: Principal | None,
                   data: ContentCreate) -> ContentItem:
    course = _course(session, data.course_id)
    policy.authorize(session, actor, Permission.content_create, Scope.of_course(course), what="adding content")
    if data.file_path is not None:
        resolve_media(settings, data.file_path)
    check_planned_week(course, data.planned_week)
    actor_id = actor.id if actor else None
    item = ContentItem(course_id=course.id, kind=data.kind, title=data.title, body=data.body,
                       file_path=data.file_path, position=data.position, planned_week=data.planned_week, version=1,
                       accessibility=data.accessibility.model_dump(exclude_none=True), created_by=actor_id)
    session.add(item)
    session.flush()
    session.add(ContentVersion(content_id=item.id, version=1, title=item.title, body=item.body,
                               file_path=item.file_path, accessibility=item.accessibility, created_by=actor_id))
    emit(session, event_type="content.created", user_id=actor_id, course_id=course.id,
         payload={"content_id": str(item.id), "kind": item.kind.value, "version": 1,
                  "planned_week": item.planned_week})
    _audit.record(session, actor_id=actor_id, action="content.create", resource_type="content",
                  resource_id=item.id)
    session.commit()
    return item


def _readable_item(session: Session, actor: Principal | None, content_id: uuid.UUID) -> ContentItem:
    item = get_or_not_found(session, ContentItem, content_id, "Content")
    course = _course(session, item.course_id)
    policy.authorize(session, actor, Permission.content_read, Scope.of_course(course),
                     what="this content (enroll in the course first)")
    return item


def get_content(*, session: Session, actor: Principal | None, content_id: uuid.UUID,
                version: int | None = None) -> ContentPublic:
    item = _readable_item(session, actor, content_id)
    public = ContentPublic.model_validate(item)
    if version is None or version == item.version:
        return public
    snapshot = session.scalar(select(ContentVersion).where(ContentVersion.content_id == item.id,
                                                           ContentVersion.version == version))
    if snapshot is None:
        raise NotFound(f"Content {content_id} has no version {version}; versions are 1..{item.version}",
                       details={"latest_version": item.version})
    return public.model_copy(update={"title": snapshot.title, "body": snapshot.body, "file_path": snapshot.file_path,
                                     "accessibility": snapshot.accessibility, "version": snapshot.version,
                                     "updated_at": snapshot.created_at})


def update_content(*, session: Session, settings: Settings, actor: Principal | None, content_id: uuid.UUID,
                   data: ContentUpdate) -> ContentItem:
    item = get_or_not_found(session, ContentItem, content_id, "Content")
    course = _course(session, item.course_id)
    policy.authorize(session, actor, Permission.content_update, Scope.of_course(course), what="this content")
    try:
        session.refresh(item, with_for_update=True)  # PostgreSQL: concurrent updates of the item take turns
    except InvalidRequestError as exc:  # deleted by a concurrent request meanwhile
        raise NotFound(f"Content {content_id} was deleted", details={"resource": "content"}) from exc
    changes = data.changes()
    if not changes:
        raise InvalidInput("Nothing to update; send at least one of title, body, file_path, position, "
                           "planned_week, accessibility")
    apply_changes(session=session, settings=settings, actor=actor, course=course, item=item, changes=changes)
    commit_versions(session)
    return item


def commit_versions(session: Session) -> None:
    """Commit new content versions; two concurrent updates of one item (the second would write the same version
    number) become a Conflict the caller can retry, not a server error."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("This content was changed at the same time by another request; reload it and retry") from exc


def apply_changes(*, session: Session, settings: Settings, actor: Principal | None, course: Course,
                  item: ContentItem, changes: dict[str, Any]) -> None:
    """Validate and apply ``changes`` (:meth:`ContentUpdate.changes`) to ``item`` of ``course`` as a new version,
    with its event and audit record; the caller authorizes and commits."""
    if "file_path" in changes:
        resolve_media(settings, changes["file_path"])
    if "planned_week" in changes:
        check_planned_week(course, changes["planned_week"])
    for field, value in changes.items():
        setattr(item, field, value)
    item.version += 1
    actor_id = actor.id if actor else None
    session.add(ContentVersion(content_id=item.id, version=item.version, title=item.title, body=item.body,
                               file_path=item.file_path, accessibility=item.accessibility, created_by=actor_id))
    emit(session, event_type="content.updated", user_id=actor_id, course_id=item.course_id,
         payload={"content_id": str(item.id), "version": item.version, "fields": sorted(changes),
                  "planned_week": item.planned_week})
    _audit.record(session, actor_id=actor_id, action="content.update", resource_type="content",
                  resource_id=item.id, details={"version": item.version})


def delete_content(*, session: Session, settings: Settings, actor: Principal | None, content_id: uuid.UUID) -> None:
    """Remove an item with its versions, transcode jobs and HLS renditions (the uploaded source file stays: other
    items may use it). ``content.deleted`` takes it out of search; learners' recorded opens of it stay in the event
    history (recommendations and the plan no longer count them)."""
    item = session.scalar(select(ContentItem).where(ContentItem.id == content_id).with_for_update())
    if item is None:
        raise NotFound(f"Content {content_id} does not exist", details={"resource": "content", "id": str(content_id)})
    course = _course(session, item.course_id)
    policy.authorize(session, actor, Permission.content_update, Scope.of_course(course), what="this content")
    actor_id = actor.id if actor else None
    emit(session, event_type="content.deleted", user_id=actor_id, course_id=course.id,
         payload={"content_id": str(item.id), "version": item.version})
    _audit.record(session, actor_id=actor_id, action="content.delete", resource_type="content",
                  resource_id=item.id, details={"title": item.title, "version": item.version})
    session.delete(item)
    session.commit()
    shutil.rmtree(media_dir(settings) / "hls" / str(content_id), ignore_errors=True)


def list_course_content(*, session: Session, actor: Principal | None, course_id: uuid.UUID, limit: int,
                        offset: int) -> tuple[list[ContentItem], int]:
    course = _course(session, course_id)
    policy.authorize(session, actor, Permission.content_read, Scope.of_course(course),
                     what="this course's content (enroll first)")
    statement = select(ContentItem).where(ContentItem.course_id == course.id).order_by(ContentItem.position,
                                                                                      ContentItem.created_at)
    return paginate(session, statement, limit=limit, offset=offset)
