"""Learner activity ingestion: page views, video plays, resource clicks → ``lms.analytics.events``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from learnloop.errors import InvalidInput
from learnloop.events import Event
from platform_api import policy
from platform_api._db import get_or_not_found
from platform_api._models import ContentItem, Course
from platform_api._outbox import emit
from platform_api._schemas import ActivityEventCreate
from platform_api.policy import Permission, Principal, Scope


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
