"""Courses, their publication lifecycle, enrollments and progress."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from platform_api import _audit, policy
from platform_api._db import get_or_not_found, paginate
from platform_api._models import ContentItem, Course, Enrollment, User
from platform_api._outbox import emit
from platform_api._schemas import CourseCreate, CourseUpdate, ProgressUpdate
from platform_api.data import (
    CourseStatus,
    CourseVisibility,
    EnrollmentStatus,
    EnrollmentType,
    ScopeType,
    UserRole,
    UserStatus,
)
from platform_api.policy import Permission, Principal, Scope

# Allowed publication transitions; anything else is a Conflict that names the way forward.
COURSE_TRANSITIONS: dict[CourseStatus, frozenset[CourseStatus]] = {
    CourseStatus.draft: frozenset({CourseStatus.review, CourseStatus.published, CourseStatus.archived}),
    CourseStatus.review: frozenset({CourseStatus.draft, CourseStatus.published, CourseStatus.archived}),
    CourseStatus.published: frozenset({CourseStatus.archived}),
    CourseStatus.archived: frozenset({CourseStatus.draft}),
}


def _actor_id(actor: Principal | None) -> uuid.UUID | None:
    return actor.id if actor is not None else None


def _may_see(session: Session, actor: Principal | None, course: Course) -> bool:
    if actor is None:
        return True
    # The common case first, without queries: a published public course is readable by every account.
    if course.status is CourseStatus.published and course.visibility is CourseVisibility.public \
            and Permission.courses_read in actor.global_permissions():
        return True
    scope = Scope.of_course(course)
    if policy.has_permission(session, actor, Permission.courses_read_unpublished, scope):
        return True
    if course.status is CourseStatus.archived:
        # Its learners keep reading a course they took (policy.LEARNER_COURSE_STATUSES); it is gone for the rest.
        return policy.has_permission(session, actor, Permission.content_read, scope)
    if course.status is not CourseStatus.published:
        return False
    match course.visibility:
        case CourseVisibility.public:
            return Permission.courses_read in actor.global_permissions()
        case CourseVisibility.institution:
            mine = policy.institution_of(actor.user.metadata_)  # admin-managed: users cannot declare their own
            return (mine is not None and mine == scope.institution_id) or \
                policy.has_permission(session, actor, Permission.content_read, scope)
        case _:  # private: only people with a role in it (enrolled learners, staff)
            return policy.has_permission(session, actor, Permission.content_read, scope)


def get_course(*, session: Session, actor: Principal | None, course_id: uuid.UUID) -> Course:
    course = get_or_not_found(session, Course, course_id, "Course", "list courses with GET /api/v1/courses")
    if not _may_see(session, actor, course):
        # Unpublished or private courses do not exist for outsiders.
        raise NotFound(f"Course {course_id} does not exist", details={"resource": "course", "id": str(course_id)})
    return course


def list_courses(*, session: Session, actor: Principal | None, status: CourseStatus | None,
                 instructor_id: uuid.UUID | None, limit: int, offset: int) -> tuple[list[Course], int]:
    statement = select(Course).order_by(Course.created_at, Course.id)
    if status is not None:
        statement = statement.where(Course.status == status)
    if instructor_id is not None:
        statement = statement.where(Course.instructor_id == instructor_id)
    if actor is not None and Permission.courses_read_unpublished not in actor.global_permissions():
        visible = (Course.status == CourseStatus.published) & (Course.visibility == CourseVisibility.public)
        mine = or_(Course.instructor_id == actor.id, Course.created_by == actor.id)
        enrolled = Course.status.in_(sorted(policy.LEARNER_COURSE_STATUSES)) & Course.id.in_(
            select(Enrollment.course_id).where(Enrollment.user_id == actor.id,
                                               Enrollment.status.in_(sorted(policy.LEARNER_ENROLLMENT_STATUSES))))
        statement = statement.where(or_(visible, mine, enrolled,
                                        Course.id.in_(_visible_through_metadata(session, actor))))
    return paginate(session, statement, limit=limit, offset=offset)


def _visible_through_metadata(session: Session, actor: Principal) -> list[uuid.UUID]:
    """Courses the caller sees through a course-, institution- or group-scoped grant or through their institution:
    these depend on grants and course metadata, so :func:`_may_see` decides them one course at a time (the rule of
    get_course)."""
    granted = sorted({uuid.UUID(g.scope_id) for g in actor.grants
                      if g.scope_type is ScopeType.course and g.scope_id and _is_uuid(g.scope_id)}, key=str)
    candidates = [Course.id.in_(granted)] if granted else []
    if any(g.scope_type in (ScopeType.institution, ScopeType.group) for g in actor.grants):
        candidates.append((Course.visibility != CourseVisibility.public) | (Course.status != CourseStatus.published))
    elif policy.institution_of(actor.user.metadata_) is not None:
        candidates.append((Course.visibility == CourseVisibility.institution)
                          & (Course.status == CourseStatus.published))
    if not candidates:  # the common case: no query
        return []
    return [course.id for course in session.scalars(select(Course).where(or_(*candidates)))
            if _may_see(session, actor, course)]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _check_instructor(session: Session, instructor_id: uuid.UUID) -> None:
    instructor = session.get(User, instructor_id)
    if instructor is None:
        raise InvalidInput(f"instructor_id {instructor_id} is not a user", details={"field": "instructor_id"})
    if instructor.role not in (UserRole.instructor, UserRole.admin, UserRole.creator):
        raise InvalidInput(f"User {instructor_id} is a {instructor.role.value}, not an instructor; "
                           "change their role first", details={"field": "instructor_id"})


def week_one(course: Course) -> datetime:
    """When the course's week 1 begins: ``starts_at``, else its creation (aware UTC: see ``UTCTimestamp``)."""
    return course.starts_at or course.created_at


def week_of(start: datetime, when: datetime) -> int:
    """The course week ``when`` falls in counted from ``start`` (:func:`week_one`): 1 = the first; before the start
    counts as week 1."""
    return max(0, (when - start).days) // 7 + 1


def _start_of(course: Course) -> str | None:
    """``starts_at`` as carried in course events (what recommender training counts a course's weeks from; null:
    from the ``course.created`` event, i.e. the creation, as :func:`week_one`)."""
    return course.starts_at.isoformat() if course.starts_at is not None else None


def create_course(*, session: Session, actor: Principal | None, data: CourseCreate) -> Course:
    policy.require_global(actor, Permission.courses_create)
    instructor_id = data.instructor_id or _actor_id(actor)
    if instructor_id is not None and instructor_id != _actor_id(actor):
        if actor is not None and not actor.is_admin:
            raise PermissionDenied("Only an administrator may create a course for another instructor")
        _check_instructor(session, instructor_id)
    course = Course(title=data.title, description=data.description, instructor_id=instructor_id,
                    created_by=_actor_id(actor), status=CourseStatus.draft, visibility=data.visibility,
                    enrollment_type=data.enrollment_type, duration_weeks=data.duration_weeks,
                    starts_at=data.starts_at, credit_hours=data.credit_hours, metadata_=data.metadata)
    session.add(course)
    session.flush()
    emit(session, event_type="course.created", user_id=_actor_id(actor), course_id=course.id,
         payload={"title": course.title, "instructor_id": str(instructor_id) if instructor_id else None,
                  "start": _start_of(course)})
    _audit.record(session, actor_id=_actor_id(actor), action="course.create", resource_type="course",
                  resource_id=course.id)
    session.commit()
    return course


def update_course(*, session: Session, actor: Principal | None, course_id: uuid.UUID,
                  data: CourseUpdate) -> Course:
    course = get_course(session=session, actor=actor, course_id=course_id)
    scope = Scope.of_course(course)
    policy.authorize(session, actor, Permission.courses_update, scope, what="this course")
    changes = data.changes()
    new_status = changes.pop("status", None)
    if "instructor_id" in changes and changes["instructor_id"] != course.instructor_id:
        if actor is not None and not actor.is_admin:
            raise PermissionDenied("Only an administrator may hand a course to another instructor")
        _check_instructor(session, changes["instructor_id"])
    if changes.get("duration_weeks") is not None and changes["duration_weeks"] != course.duration_weeks:
        _check_planned_within(session, course, changes["duration_weeks"])
    for field, value in changes.items():
        setattr(course, "metadata_" if field == "metadata" else field, value)
    event_type = "course.updated"
    if new_status is not None and new_status != course.status:
        policy.authorize(session, actor, Permission.courses_publish, scope, what="changing the course status")
        allowed = COURSE_TRANSITIONS[course.status]
        if new_status not in allowed:
            raise Conflict(f"Course {course.id} is {course.status.value}; it can move to "
                           f"{', '.join(sorted(s.value for s in allowed))}, not {new_status.value}",
                           details={"status": course.status.value, "allowed": sorted(s.value for s in allowed)})
        course.status = new_status
        event_type = {CourseStatus.published: "course.published", CourseStatus.archived: "course.archived"}.get(
            new_status, "course.status_changed")
    emit(session, event_type=event_type, user_id=_actor_id(actor), course_id=course.id,
         payload={"fields": sorted(changes), "status": course.status.value, "start": _start_of(course)})
    _audit.record(session, actor_id=_actor_id(actor), action=event_type, resource_type="course",
                  resource_id=course.id, details={"fields": sorted(changes)})
    session.commit()
    return course


def _check_planned_within(session: Session, course: Course, duration_weeks: int) -> None:
    """Refuse a duration that leaves content planned after the course's last week (the plan could not be saved)."""
    later, latest = session.execute(select(func.count(), func.max(ContentItem.planned_week)).where(
        ContentItem.course_id == course.id, ContentItem.planned_week > duration_weeks)).one()
    if later:
        raise Conflict(f"Course {course.id} has {later} content item{'s' if later != 1 else ''} planned after week "
                       f"{duration_weeks} (the latest in week {latest}); move them to week {duration_weeks} or "
                       f"earlier in the plan (PUT /api/v1/courses/{course.id}/plan) before shortening the course",
                       details={"field": "duration_weeks", "items_planned_later": later, "latest_planned_week": latest})


def enroll(*, session: Session, actor: Principal | None, course_id: uuid.UUID,
           user_id: uuid.UUID | None = None) -> Enrollment:
    course = get_course(session=session, actor=actor, course_id=course_id)
    scope = Scope.of_course(course)
    target_id = user_id or _actor_id(actor)
    if target_id is None:
        raise InvalidInput("user_id is required when no user is logged in", details={"field": "user_id"})
    by_staff = target_id != _actor_id(actor)
    if by_staff:
        policy.authorize(session, actor, Permission.enrollments_manage, scope, what="enrolling other users")
    else:
        policy.require_global(actor, Permission.enrollments_create)
    if course.status is CourseStatus.archived:
        raise Conflict(f"Course {course.id} is archived; enrollments are closed (unarchive it first)")
    if course.status is not CourseStatus.published:
        raise Conflict(f"Course {course.id} is {course.status.value}; enrollments open once it is published")
    if not by_staff and actor is not None and course.enrollment_type is not EnrollmentType.open:
        raise Conflict(f"Course {course.id} is {course.enrollment_type.value.replace('_', ' ')}; "
                       "ask its instructor to enroll you")
    target = session.get(User, target_id)
    if target is None:
        raise NotFound(f"User {target_id} does not exist", details={"resource": "user", "id": str(target_id)})
    if target.status is not UserStatus.active:
        raise Conflict(f"User {target_id} is {target.status.value}; reactivate the account first")
    existing = session.scalar(select(Enrollment).where(Enrollment.user_id == target_id,
                                                       Enrollment.course_id == course.id).with_for_update())
    if existing is not None and existing.status is not EnrollmentStatus.dropped:
        raise Conflict(f"User {target_id} is already enrolled in course {course.id} ({existing.status.value})",
                       details={"enrollment_id": str(existing.id)})
    if existing is None:
        enrollment = Enrollment(user_id=target_id, course_id=course.id, status=EnrollmentStatus.enrolled)
        session.add(enrollment)
        session.flush()
    else:
        # A learner who dropped out comes back to the same enrollment (one per user and course): their progress,
        # start and submissions stay; it is active again, so it is announced as an enrollment again.
        enrollment = existing
        enrollment.status = EnrollmentStatus.enrolled
        enrollment.completed_at = None
    payload = {"enrollment_id": str(enrollment.id), "by": str(_actor_id(actor)) if by_staff else "self"}
    if existing is not None:
        payload |= {"reenrolled": True, "progress": enrollment.progress}
    emit(session, event_type="enrollment.created", user_id=target_id, course_id=course.id, payload=payload)
    _audit.record(session, actor_id=_actor_id(actor), action="enrollment.create", resource_type="enrollment",
                  resource_id=enrollment.id, details={"reenrolled": True} if existing is not None else None)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"User {target_id} is already enrolled in course {course.id}") from exc
    return enrollment


def list_user_enrollments(*, session: Session, actor: Principal | None, user_id: uuid.UUID, limit: int,
                          offset: int) -> tuple[list[Enrollment], int]:
    get_or_not_found(session, User, user_id, "User")
    statement = select(Enrollment).where(Enrollment.user_id == user_id).order_by(Enrollment.created_at,
                                                                                 Enrollment.id)
    if actor is not None and actor.id != user_id and Permission.users_read not in actor.global_permissions():
        # Staff see a learner's enrollments in their own courses only (FERPA).
        staffed = [c for c in session.scalars(select(Enrollment.course_id).where(Enrollment.user_id == user_id))
                   if policy.has_permission(session, actor, Permission.enrollments_read,
                                            Scope.of_course(session.get(Course, c)))]
        if not staffed:
            raise PermissionDenied("You may only see your own enrollments or those in courses you teach")
        statement = statement.where(Enrollment.course_id.in_(staffed))
    return paginate(session, statement, limit=limit, offset=offset)


def list_course_enrollments(*, session: Session, actor: Principal | None, course_id: uuid.UUID,
                            status: EnrollmentStatus | None, limit: int, offset: int) -> tuple[list[Enrollment], int]:
    """The course's roster, for its staff only."""
    course = get_or_not_found(session, Course, course_id, "Course")
    policy.authorize(session, actor, Permission.enrollments_read, Scope.of_course(course),
                     what="this course's roster")
    statement = select(Enrollment).where(Enrollment.course_id == course.id).order_by(Enrollment.created_at,
                                                                                     Enrollment.id)
    if status is not None:
        statement = statement.where(Enrollment.status == status)
    return paginate(session, statement, limit=limit, offset=offset)


def update_progress(*, session: Session, actor: Principal | None, enrollment_id: uuid.UUID,
                    data: ProgressUpdate) -> Enrollment:
    enrollment = get_or_not_found(session, Enrollment, enrollment_id, "Enrollment")
    course = session.get(Course, enrollment.course_id)
    if actor is not None and actor.id != enrollment.user_id:
        policy.authorize(session, actor, Permission.enrollments_manage, Scope.of_course(course),
                         what="another learner's progress")
    if enrollment.status is EnrollmentStatus.dropped:
        raise Conflict(f"Enrollment {enrollment.id} is dropped; re-enroll before recording progress "
                       f"(POST /api/v1/courses/{enrollment.course_id}/enrollments)",
                       details={"status": enrollment.status.value, "course_id": str(enrollment.course_id)})
    if enrollment.status is EnrollmentStatus.suspended:
        raise Conflict(f"Enrollment {enrollment.id} is suspended; ask the course's instructor before recording "
                       "progress", details={"status": enrollment.status.value})
    enrollment.progress = data.progress
    event_type = "enrollment.progress_updated"
    if data.status is EnrollmentStatus.dropped:
        enrollment.status = EnrollmentStatus.dropped
        event_type = "enrollment.dropped"
    elif data.progress >= 100 or data.status is EnrollmentStatus.completed:
        if data.progress < 100:
            raise InvalidInput("status 'completed' needs progress 100", details={"field": "progress"})
        if enrollment.status is not EnrollmentStatus.completed:
            enrollment.status = EnrollmentStatus.completed
            enrollment.completed_at = datetime.now(UTC)
            event_type = "enrollment.completed"
    elif enrollment.status is EnrollmentStatus.completed:
        enrollment.status = EnrollmentStatus.enrolled
        enrollment.completed_at = None
    emit(session, event_type=event_type, user_id=enrollment.user_id, course_id=enrollment.course_id,
         payload={"enrollment_id": str(enrollment.id), "progress": enrollment.progress,
                  "status": enrollment.status.value})
    _audit.record(session, actor_id=_actor_id(actor), action=event_type, resource_type="enrollment",
                  resource_id=enrollment.id, details={"progress": enrollment.progress})
    session.commit()
    return enrollment
