"""The event envelope every producer and consumer of the platform's event stream shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Topic(StrEnum):
    users = "lms.users.events"
    courses = "lms.courses.events"
    enrollments = "lms.enrollments.events"
    assessments = "lms.assessments.events"
    content = "lms.content.events"
    analytics = "lms.analytics.events"


class Event(BaseModel):
    """One fact that happened on the platform, as published on ``lms.<domain>.events``."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str = Field(examples=["enrollment.created"], min_length=1, max_length=100)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source_service: str = Field(default="platform_api", max_length=100)
    user_id: str | None = None
    course_id: str | None = None
    session_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def topic(self) -> Topic:
        """The topic follows the event type's domain prefix (``enrollment.created`` → enrollments)."""
        return topic_for(self.event_type)


_PREFIX_TO_TOPIC = {
    "user": Topic.users,
    "course": Topic.courses,
    "enrollment": Topic.enrollments,
    "assessment": Topic.assessments,
    "question": Topic.assessments,
    "submission": Topic.assessments,
    "grade": Topic.assessments,
    "content": Topic.content,
}


def topic_for(event_type: str) -> Topic:
    """Map an event type to its topic; learner activity (anything unknown) goes to analytics."""
    return _PREFIX_TO_TOPIC.get(event_type.split(".", 1)[0], Topic.analytics)
