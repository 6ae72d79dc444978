"""The course plan: the week each content item is planned for, the assessments due each week, and how far the
course's learners have got with it; and the instructor's change of several items' weeks at once.

Weeks count from the course's ``starts_at`` (:func:`platform_api._courses.week_one`), the same weeks the
recommendations' catch-up and the recommender use. Staff (``enrollments:read``) see how many active learners have
opened each item; an item planned for this week or earlier that fewer than half of them opened is *behind*: what
the catch-up slot of their recommendations pushes. Content editors without access to learners (the ``creator``
role) see and change the plan without those counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, PermissionDenied
from learnloop.settings import Settings
from platform_api import _activity, _content, _courses, policy
from platform_api._models import Assessment, ContentItem, Course, Enrollment, User
from platform_api._schemas import MAX_PLAN_CHANGES, MAX_PLANNED_WEEK
from platform_api.data import EnrollmentStatus, UserStatus
from platform_api.policy import Permission, Principal, Scope

BEHIND_SHARE = 0.5  # an item of a past or the current week opened by fewer than this share of learners is behind
MAX_CHANGES = MAX_PLAN_CHANGES  # items one plan update may move
MAX_WEEKS = MAX_PLANNED_WEEK  # the latest week a plan shows


@dataclass(frozen=True)
class PlanItem:
    item: ContentItem
    opened_by: int | None  # active learners who opened it (None: the caller may not see learners' activity)
    behind: bool = False


@dataclass(frozen=True)
class PlanWeek:
    week: int  # 1 = the first
    starts_at: datetime
    items: list[PlanItem]
    assessments: list[Assessment]  # due this week


@dataclass(frozen=True)
class CoursePlan:
    course: Course
    starts_at: datetime  # week 1 begins
    current_week: int | None  # None before the course starts
    learners: int | None  # active enrollments (None: as ``opened_by``)
    weeks: list[PlanWeek]
    unplanned: list[PlanItem]  # items without a planned week, in course order
    unscheduled: list[Assessment]  # assessments without a due date (or due after MAX_WEEKS)
    can_edit: bool


def _plan_course(session: Session, actor: Principal | None, course_id: uuid.UUID) -> tuple[Course, bool, bool]:
    """The course, whether the caller sees learners' activity, whether they may change the plan."""
    course = _courses.get_course(session=session, actor=actor, course_id=course_id)
    if actor is None:
        return course, True, True
    scope = Scope.of_course(course)
    staff = policy.has_permission(session, actor, Permission.enrollments_read, scope)
    editor = policy.has_permission(session, actor, Permission.content_update, scope)
    if not (staff or editor):
        raise PermissionDenied("The course plan is for the course's staff and content editors; learners get "
                               "their next items from GET /api/v1/users/{id}/recommendations",
                               details={"permissions": [Permission.enrollments_read.value,
                                                        Permission.content_update.value],
                                        "course_id": str(course.id)})
    return course, staff, editor


def course_plan(*, session: Session, actor: Principal | None, course_id: uuid.UUID,
                now: datetime | None = None) -> CoursePlan:
    course, staff, editor = _plan_course(session, actor, course_id)
    now = now or datetime.now(UTC)
    start = _courses.week_one(course)
    items = list(session.scalars(select(ContentItem).where(ContentItem.course_id == course.id)
                                 .order_by(ContentItem.position, ContentItem.created_at)))
    assessments = list(session.scalars(select(Assessment).where(Assessment.course_id == course.id)
                                       .order_by(Assessment.due_at.asc().nulls_last(), Assessment.title)))
    current = _courses.week_of(start, now) if now >= start else None
    learners: int | None = None
    opened: dict[str, int] = {}
    if staff:
        active = {str(u) for u in session.scalars(select(Enrollment.user_id).join(User).where(
            Enrollment.course_id == course.id, Enrollment.status == EnrollmentStatus.enrolled,
            User.status == UserStatus.active))}  # an erased learner's opens no longer carry their id
        learners = len(active)
        opens = _activity.content_opens(session, course.id, {str(i.id) for i in items}, start)
        opened = (opens[opens["user_id"].isin(active)].drop_duplicates(["user_id", "item_id"])["item_id"]
                  .value_counts().to_dict())

    def entry(item: ContentItem) -> PlanItem:
        if learners is None:
            return PlanItem(item, None)
        count = opened.get(str(item.id), 0)
        due = item.planned_week is not None and current is not None and item.planned_week <= current
        return PlanItem(item, count, behind=due and learners > 0 and count < BEHIND_SHARE * learners)

    due_week = {a.id: _courses.week_of(start, a.due_at) for a in assessments if a.due_at is not None}
    # The course's weeks, and any later week something is planned for or due in (up to MAX_WEEKS).
    last = min(MAX_WEEKS, max([course.duration_weeks or 1, *due_week.values(),
                               *(i.planned_week for i in items if i.planned_week is not None)]))
    weeks = [PlanWeek(week=w, starts_at=start + timedelta(weeks=w - 1),
                      items=[entry(i) for i in items if i.planned_week == w],
                      assessments=[a for a in assessments if due_week.get(a.id) == w])
             for w in range(1, last + 1)]
    return CoursePlan(course=course, starts_at=start, current_week=current, learners=learners, weeks=weeks,
                      unplanned=[entry(i) for i in items if i.planned_week is None],
                      unscheduled=[a for a in assessments if due_week.get(a.id, MAX_WEEKS + 1) > last],
                      can_edit=editor)


def set_planned_weeks(*, session: Session, settings: Settings, actor: Principal | None, course_id: uuid.UUID,
                      weeks: Mapping[uuid.UUID, int | None],
                      expected: Mapping[uuid.UUID, int | None] | None = None) -> int:
    """Give the course's items ``weeks`` (content id → planned week; None clears it) in one transaction. Items
    already in that week are left alone (no new version); returns how many changed. Any invalid week or an item
    of another course refuses the whole change, and so does an item whose week is no longer its ``expected`` one
    (the week the caller saw: someone else moved it since)."""
    course, _, editor = _plan_course(session, actor, course_id)
    if not editor:
        raise PermissionDenied("Changing the plan needs the permission 'content:update' in this course",
                               details={"permission": Permission.content_update.value, "course_id": str(course.id)})
    if len(weeks) > MAX_CHANGES:
        raise InvalidInput(f"At most {MAX_CHANGES} items per plan change; send the rest in another",
                           details={"field": "items", "max": MAX_CHANGES})
    # locked until the commit (PostgreSQL): two saves of one item cannot both write its next version
    found = {i.id: i for i in session.scalars(select(ContentItem).where(
        ContentItem.course_id == course.id, ContentItem.id.in_(list(weeks))).with_for_update())}
    missing = [str(c) for c in weeks if c not in found]
    if missing:
        raise InvalidInput(f"Not content of course {course.id}: {', '.join(missing[:5])}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                           details={"field": "items", "content_ids": missing[:20]})
    for week in weeks.values():
        if week is not None and not 1 <= week <= MAX_WEEKS:
            raise InvalidInput(f"Week {week} is outside 1..{MAX_WEEKS}", details={"field": "planned_week"})
        _content.check_planned_week(course, week)
    moved = [found[c] for c in weeks if expected is not None and c in expected and weeks[c] != found[c].planned_week
             and found[c].planned_week != expected[c]]
    if moved:
        raise Conflict(f"Someone else changed the week of {', '.join(repr(i.title) for i in moved[:3])}"
                       + (f" and {len(moved) - 3} more" if len(moved) > 3 else "")
                       + " since you loaded the plan; reload it and make your change again",
                       details={"content_ids": [str(i.id) for i in moved[:20]]})
    changed = 0
    for content_id, week in weeks.items():
        item = found[content_id]
        if item.planned_week == week:
            continue
        _content.apply_changes(session=session, settings=settings, actor=actor, course=course, item=item,
                               changes={"planned_week": week})
        changed += 1
    _content.commit_versions(session)
    return changed
