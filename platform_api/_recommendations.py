"""What a learner should open next in a course: the recommender's served list, or the platform's fallback.

The platform assembles the recommender's inputs from its own records: the course's content items and the content
opens recorded through ``POST /api/v1/events`` (kept in the outbox). The recommender assigns the A/B arm
(deterministic by user hash), ranks, and logs the served list; the platform also emits ``recommendations.served``
with the arm on ``lms.analytics.events`` so clicks that follow can be attributed.

Content items may carry the instructor's ``planned_week``; the recommender reads it as each item's planned week of
use (a ranker feature), and both arms hold items planned for later weeks back.

Fallback (no recommender in this process, or it failed): the items of the course the learner has not opened yet,
those planned for a later week last, then the most opened (ties in course order); ``variant`` null, and the header
``X-Learnloop-Fallback: recommendations-popularity``.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unavailable
from platform_api import _activity, _alerts, _courses, policy
from platform_api._db import get_or_not_found
from platform_api._models import ContentItem, Course, Enrollment, User
from platform_api._outbox import emit
from platform_api.data import EnrollmentStatus
from platform_api.policy import Principal

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("platform_api.recommendations")

FALLBACK_REASON = "recommendations-popularity"
# Top slots for catch-up items (planned up to the next assessment's week, not opened yet). Remedial content for an
# at-risk learner (the interventions job, for staff) turns more of the list to the assessment due next; the list a
# learner or their staff open is the same for everyone, so it never tells a learner they were flagged.
CATCH_UP_SLOTS = {"at_risk": 3, "other": 1}


@dataclass(frozen=True)
class ServedItem:
    item_id: str
    title: str
    kind: str
    planned_week: int | None
    score: float
    reason: str


@dataclass(frozen=True)
class CatchUp:
    """The assessment due next that the first items of a list prepare for."""

    assessment_id: str
    title: str
    due_at: datetime
    due_week: int
    items: list[str]


@dataclass(frozen=True)
class ServedList:
    user_id: uuid.UUID
    course_id: uuid.UUID
    experiment: str | None
    variant: str | None
    cold_start: bool
    items: list[ServedItem]
    fallback: str | None = None  # why the platform's popularity list was served instead of the recommender's
    catch_up: CatchUp | None = None


def _served(item: ContentItem, score: float, reason: str) -> ServedItem:
    return ServedItem(str(item.id), item.title, item.kind.value, item.planned_week, score, reason)


def _popularity(items: list[ContentItem], opens: pd.DataFrame, seen: set[str], limit: int,
                week: int) -> tuple[list, bool]:
    """Items the learner has not opened: those planned for a later week than ``week`` (1 = the first) last, then
    the most opened, then course order."""
    counts = Counter(opens["item_id"].value_counts().to_dict())
    ranked = sorted((i for i in items if str(i.id) not in seen),
                    key=lambda i: ((i.planned_week or 0) > week, -counts[str(i.id)], i.position))
    return [(str(i.id), float(counts[str(i.id)])) for i in ranked[:limit]], not seen


def _catch_up(session: Session, course: Course, items: list[ContentItem], seen: set[str], start: datetime,
              now: datetime) -> tuple[CatchUp | None, list[ContentItem]]:
    """The assessment due next and the items the learner has not opened that the plan puts before it and no later
    than this week (earliest planned first): what they should have opened by now to be ready for it."""
    due = _alerts.next_due_assessments(session=session, course_ids=[course.id], now=now).get(course.id)
    if due is None:
        return None, []
    due_at = datetime.fromisoformat(due["due_at"])
    horizon = min(_courses.week_of(start, due_at), _courses.week_of(start, now))
    behind = sorted((i for i in items if i.planned_week is not None and i.planned_week <= horizon
                     and str(i.id) not in seen), key=lambda i: (i.planned_week, i.position))
    if not behind:
        return None, []
    return CatchUp(assessment_id=due["assessment_id"], title=due["title"], due_at=due_at,
                   due_week=_courses.week_of(start, due_at), items=[]), behind


def _with_catch_up(result: ServedList, catch_up: CatchUp, behind: list[ContentItem], *, slots: int,
                   limit: int) -> ServedList:
    scores = {i.item_id: i.score for i in result.items}
    first = [_served(item, scores.get(str(item.id), 0.0),
                     f"prepares for {catch_up.title} (due {catch_up.due_at:%d %b}); planned for week "
                     f"{item.planned_week}") for item in behind[:min(slots, limit)]]
    chosen = {i.item_id for i in first}
    items = (first + [i for i in result.items if i.item_id not in chosen])[:limit]
    return replace(result, items=items, catch_up=replace(catch_up, items=[i.item_id for i in first]))


def recommendations(*, session: Session, actor: Principal | None, backend: Callable | None, user_id: uuid.UUID,
                    course_id: uuid.UUID, limit: int, treatment_share: float = 0.5,
                    now: datetime | None = None, at_risk: bool = False) -> ServedList:
    """The learner's next items in a course, for the learner themself or the course's staff.

    When an assessment is due next and the course plan puts items the learner has not opened before it (no later
    than this week), the first slots go to those (``catch_up``): one, or ``CATCH_UP_SLOTS["at_risk"]`` with
    ``at_risk`` (remedial content the interventions job suggests to staff for a flagged learner; never looked up
    from alerts here, so a learner's own list cannot reveal an alert)."""
    course = _courses.get_course(session=session, actor=actor, course_id=course_id)
    user = get_or_not_found(session, User, user_id, "User")
    if actor is not None and actor.id != user.id and not policy.is_course_staff(session, actor, course):
        raise PermissionDenied("Only the learner themself and the course's staff may see a learner's "
                               "recommendations", details={"course_id": str(course.id)})
    status = session.scalar(select(Enrollment.status).where(Enrollment.user_id == user.id,
                                                            Enrollment.course_id == course.id))
    if status not in (EnrollmentStatus.enrolled, EnrollmentStatus.completed):
        raise Conflict(f"User {user.id} is not enrolled in course {course.id}; recommendations are for enrolled "
                       "learners (enroll with POST /api/v1/courses/{id}/enrollments)")
    items = list(session.scalars(select(ContentItem).where(ContentItem.course_id == course.id)
                                 .order_by(ContentItem.position, ContentItem.created_at)))
    by_id = {str(i.id): i for i in items}
    start = _courses.week_one(course)
    now = now or datetime.now(UTC)
    opens = _activity.content_opens(session, course.id, set(by_id), start)
    seen = set(opens.loc[opens["user_id"] == str(user.id), "item_id"])  # the learner's opened items
    day = max(0, (now - start).days) + 1  # the recommender counts opens strictly before `day`: include today
    served = fallback = None
    if backend is None:
        fallback = "no recommender in this API process"
    elif items:
        import pandas as pd

        try:
            served = backend(user_id=str(user.id), course_id=str(course.id), limit=limit, day=day,
                             treatment_share=treatment_share,
                             interactions=opens,
                             items=pd.DataFrame({"item_id": list(by_id),
                                                 "kind": [i.kind.value for i in items],
                                                 # the recommender's planned week of use: 0 = the first
                                                 "week_from": [None if i.planned_week is None
                                                               else i.planned_week - 1 for i in items]}))
        except (InvalidInput, NotFound, PermissionDenied):
            raise
        except Unavailable as exc:  # the model service down, slow or its breaker open: expected, one line each
            log.warning("recommender unavailable: %s", exc.message)
            fallback = f"recommender unavailable: {exc.message}"
        except Exception as exc:  # the recommender failing must not take the page down: popularity instead
            log.exception("recommender failed")
            fallback = f"recommender failed: {type(exc).__name__}"
    if served is not None:
        picked = [(r.item_id, r.score, r.reason) for r in served.items if r.item_id in by_id]
        result = ServedList(user_id=user.id, course_id=course.id, experiment=served.experiment,
                            variant=str(served.variant.value), cold_start=served.cold_start,
                            items=[_served(by_id[i], s, why) for i, s, why in picked])
    else:
        ranked, cold = _popularity(items, opens, seen, limit, week=_courses.week_of(start, now))
        result = ServedList(user_id=user.id, course_id=course.id, experiment=None, variant=None, cold_start=cold,
                            fallback=fallback,
                            items=[_served(by_id[i], s, "most opened in this course (fallback)")
                                   for i, s in ranked])
    catch_up, behind = _catch_up(session, course, items, seen, start, now)
    if catch_up is not None:
        result = _with_catch_up(result, catch_up, behind, limit=limit,
                                slots=CATCH_UP_SLOTS["at_risk" if at_risk else "other"])
    emit(session, event_type="recommendations.served", user_id=user.id, course_id=course.id,
         source_service="platform_api.recommendations",
         payload={"experiment": result.experiment, "variant": result.variant, "cold_start": result.cold_start,
                  "fallback": result.fallback, "items": [i.item_id for i in result.items],
                  # the first items, put ahead of the arm's own ranking (feedback analysis keeps them apart)
                  "catch_up": None if result.catch_up is None else {
                      "assessment_id": result.catch_up.assessment_id, "items": result.catch_up.items,
                      "at_risk": bool(at_risk)},
                  # which learned ranker scored the list (None: control, cold start or its popularity fallback)
                  "model_version": getattr(served, "model_version", None),
                  "ranker_fallback": getattr(served, "fallback", None)})
    session.commit()
    return result
