"""Learner activity ingestion: page views, video plays, resource clicks → ``lms.analytics.events``; and reading
back who opened which content item (what recommendations and the course plan count)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from learnloop.errors import InvalidInput
from learnloop.events import Event, Topic
from platform_api import policy
from platform_api._db import get_or_not_found
from platform_api._models import ContentItem, Course, OutboxEvent
from platform_api._outbox import emit
from platform_api._schemas import ActivityEventCreate
from platform_api.data import ActivityType
from platform_api.policy import Permission, Principal, Scope

# Activity that means "the learner opened this item" (the implicit feedback the recommender learns from).
OPENS = (ActivityType.content_view, ActivityType.resource_click, ActivityType.page_view, ActivityType.video_play,
         ActivityType.video_complete)


def ingest_activity(*, session: Session, actor: Principal, data: ActivityEventCreate) -> Event:
    policy.require_global(actor, Permission.events_ingest)
    course_id = data.course_id
    if data.content_id is not None:
        content = get_or_not_found(session, ContentItem, data.content_id, "Content")
        if course_id is not None and content.course_id != course_id:
            raise InvalidInput(f"Content {content.id} belongs to course {content.course_id}, not {course_id}",
                               details={"field": "course_id"})
        course_id = content.course_id
    if course_id is not None:
        course = get_or_not_found(session, Course, course_id, "Course")
        # Activity counts only for people who can see the course's content (learners, staff).
        policy.authorize(session, actor, Permission.content_read, Scope.of_course(course),
                         what="recording activity in this course (enroll first)")
    payload = dict(data.payload)
    if data.content_id is not None:
        payload["content_id"] = str(data.content_id)
    event = emit(session, event_type=data.event_type.value, user_id=actor.id, course_id=course_id,
                 session_id=data.session_id, timestamp=data.timestamp, payload=payload,
                 source_service="platform_api.activity")
    session.commit()
    return event


def content_opens(session: Session, course_id: uuid.UUID, item_ids: Collection[str],
                  start: datetime) -> list[dict]:
    """Every recorded open of the course's items ``item_ids``: ``{"user_id", "item_id", "day"}`` with ``day`` the
    whole days since ``start`` (opens before it count on day 0)."""
    rows = session.scalars(select(OutboxEvent.envelope).where(
        OutboxEvent.topic == str(Topic.analytics), OutboxEvent.course_id == str(course_id),
        OutboxEvent.event_type.in_([o.value for o in OPENS])))
    opens = []
    for envelope in rows:
        item_id = str((envelope.get("payload") or {}).get("content_id") or "")
        if item_id not in item_ids or not envelope.get("user_id"):
            continue
        when = datetime.fromisoformat(str(envelope["timestamp"]).replace("Z", "+00:00"))
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        opens.append({"user_id": str(envelope["user_id"]), "item_id": item_id,
                      "day": max(0, (when - start).days)})
    return opens
