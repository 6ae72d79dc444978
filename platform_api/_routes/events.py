from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from platform_api import _activity
from platform_api._schemas import ActivityEventCreate, EventAccepted
from platform_api.deps import CurrentUser, SessionDep

router = APIRouter(tags=["events"])


@router.post("/events", response_model=EventAccepted, status_code=status.HTTP_202_ACCEPTED,
             summary="Record learner activity (published on lms.analytics.events)")
def ingest(body: ActivityEventCreate, session: SessionDep, actor: CurrentUser) -> Any:
    event = _activity.ingest_activity(session=session, actor=actor, data=body)
    return EventAccepted(event_id=event.event_id, topic=event.topic.value)
