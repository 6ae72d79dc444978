"""The one authorization policy: RBAC (role → permissions) scoped by ``user_roles``, plus relationships.

A user's permissions in a scope come from three sources:

1. the account role (``users.role``), which grants a small set of *global* permissions
   (``ACCOUNT_PERMISSIONS``: a student may enroll and submit, an instructor may also create courses);
2. explicit grants in ``user_roles`` (role name + scope global/institution/course/group), which grant
   ``ROLE_PERMISSIONS[role]`` wherever the scope matches the resource;
3. relationships, treated as implicit course-scoped grants: the course's ``instructor_id``/``created_by``
   is its ``instructor``; an active enrollment makes the user its ``student`` while the course is published or
   archived (not when it is moved back to draft or review).

So an instructor of course A holds ``submissions:grade`` in A only, and grading in B is refused.
Routes use :func:`require` (global gates) through ``deps.require``; services call :func:`authorize`
with the resource's :class:`Scope` and the relationship checks below (own submissions, own grades).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from learnloop.errors import PermissionDenied
from platform_api._models import Course, Enrollment, User, UserRoleGrant
from platform_api.data import CourseStatus, EnrollmentStatus, ScopeType, UserRole, UserStatus


class Permission(StrEnum):
    users_create = "users:create"
    users_list = "users:list"
    users_read = "users:read"
    users_update = "users:update"
    users_delete = "users:delete"
    users_export = "users:export"
    roles_assign = "roles:assign"
    courses_create = "courses:create"
    courses_read = "courses:read"
    courses_read_unpublished = "courses:read_unpublished"
    courses_update = "courses:update"
    courses_publish = "courses:publish"
    enrollments_create = "enrollments:create"
    enrollments_manage = "enrollments:manage"
    enrollments_read = "enrollments:read"
    content_create = "content:create"
    content_read = "content:read"
    content_update = "content:update"
    content_transcode = "content:transcode"
    questions_create = "questions:create"
    questions_read = "questions:read"
    assessments_create = "assessments:create"
    assessments_read = "assessments:read"
    submissions_create = "submissions:create"
    submissions_read = "submissions:read"
    submissions_grade = "submissions:grade"
    events_ingest = "events:ingest"
    operator_read = "operator:read"  # the operator page: models, drift reports, prediction volume


P = Permission
ALL_PERMISSIONS = frozenset(Permission)

# Global permissions of an account type (no scope needed).
ACCOUNT_PERMISSIONS: dict[UserRole, frozenset[Permission]] = {
    # Submitting is granted in a course by enrolling in it (the implicit "student" role), never globally.
    UserRole.student: frozenset({P.courses_read, P.enrollments_create, P.events_ingest}),
    UserRole.instructor: frozenset({P.courses_read, P.courses_create, P.enrollments_create, P.events_ingest}),
    UserRole.creator: frozenset({P.courses_read, P.courses_create, P.enrollments_create, P.events_ingest}),
    UserRole.admin: ALL_PERMISSIONS,
}

_COURSE_STAFF = frozenset({
    P.courses_read, P.courses_read_unpublished, P.courses_update, P.courses_publish,
    P.enrollments_read, P.enrollments_manage,
    P.content_create, P.content_read, P.content_update, P.content_transcode,
    P.questions_create, P.questions_read, P.assessments_create, P.assessments_read,
    P.submissions_read, P.submissions_grade, P.users_read,
})

# Permissions a role grants inside the scope of a user_roles grant (or an implicit relationship grant).
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": ALL_PERMISSIONS,
    "instructor": _COURSE_STAFF,
    "teaching_assistant": frozenset({
        P.courses_read, P.courses_read_unpublished, P.enrollments_read, P.content_read, P.questions_read,
        P.assessments_read, P.submissions_read, P.submissions_grade, P.users_read}),
    "creator": frozenset({
        P.courses_read, P.courses_read_unpublished, P.courses_update, P.content_create, P.content_read,
        P.content_update, P.content_transcode, P.questions_create, P.questions_read, P.assessments_create,
        P.assessments_read}),
    "student": frozenset({P.courses_read, P.content_read, P.assessments_read, P.submissions_create}),
    # Granted globally (POST /api/v1/users/{id}/roles) to people who run the models but need no learner data.
    "operator": frozenset({P.operator_read}),
}
KNOWN_ROLES = frozenset(ROLE_PERMISSIONS)
# An enrollment in one of these states, in a course in one of those, makes the user its "student".
LEARNER_ENROLLMENT_STATUSES = frozenset({EnrollmentStatus.enrolled, EnrollmentStatus.completed})
LEARNER_COURSE_STATUSES = frozenset({CourseStatus.published, CourseStatus.archived})

# Keys of ``users.metadata`` that decide what the user may read, and why. Only an administrator (or the trusted
# system) may set, change or remove them: a value the user writes themself must never grant access.
ADMIN_MANAGED_USER_METADATA: dict[str, str] = {
    "institution_id": "it decides which institution-visible courses the account may see",
    "id_student": "it links the account to a learner's records in the risk model",
}


@dataclass(frozen=True)
class Scope:
    """Where a resource lives; a grant applies when its scope matches."""

    course_id: uuid.UUID | None = None
    institution_id: str | None = None
    group_ids: frozenset[str] = frozenset()

    @classmethod
    def of_course(cls, course: Course) -> Scope:
        # Institution and groups are course metadata: the schema has no institution table.
        groups = _metadata(course.metadata_).get("group_ids")
        if not isinstance(groups, list):
            groups = []  # malformed (a number, a string, an object): no groups, never a crash
        return cls(course_id=course.id, institution_id=institution_of(course.metadata_),
                   group_ids=frozenset(key for key in map(_key, groups) if key is not None))


def _metadata(metadata: object) -> dict:
    """Stored metadata as a mapping: rows written before input was validated may hold anything."""
    return metadata if isinstance(metadata, dict) else {}


def _key(value: object) -> str | None:
    """A metadata id as a grant's ``scope_id`` spells it (text or a whole number), else None (malformed)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def institution_of(metadata: object) -> str | None:
    """``metadata.institution_id`` of a course or a user (for a user admin-managed: see
    ``ADMIN_MANAGED_USER_METADATA``), None when absent or malformed (a list, an object, …): access is decided on
    stored rows, which may predate input validation, so a bad value grants nothing."""
    return _key(_metadata(metadata).get("institution_id"))


GLOBAL = Scope()


def _as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Grant:
    role_name: str
    scope_type: ScopeType
    scope_id: str | None = None

    def applies_to(self, scope: Scope) -> bool:
        match self.scope_type:
            case ScopeType.global_:
                return True
            case ScopeType.course:
                return scope.course_id is not None and _as_uuid(self.scope_id) == scope.course_id
            case ScopeType.institution:
                return scope.institution_id is not None and scope.institution_id == self.scope_id
            case ScopeType.group:
                return self.scope_id in scope.group_ids
        return False

    def label(self) -> str:
        return self.role_name if self.scope_type is ScopeType.global_ else (
            f"{self.role_name}@{self.scope_type.value}:{self.scope_id}")


@dataclass
class Principal:
    """The authenticated caller with their explicit grants (loaded once per request)."""

    user: User
    grants: list[Grant]
    _course_roles: dict[uuid.UUID, frozenset[str]] = field(default_factory=dict)

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def is_admin(self) -> bool:
        return P.users_delete in self.global_permissions()

    def global_permissions(self) -> frozenset[Permission]:
        granted = set(ACCOUNT_PERMISSIONS.get(self.user.role, frozenset()))
        for grant in self.grants:
            if grant.scope_type is ScopeType.global_:
                granted |= ROLE_PERMISSIONS.get(grant.role_name, frozenset())
        return frozenset(granted)

    def role_labels(self) -> list[str]:
        return [self.user.role.value, *(grant.label() for grant in self.grants)]


def load_principal(session: Session, user: User) -> Principal:
    rows = session.scalars(select(UserRoleGrant).where(UserRoleGrant.user_id == user.id)).all()
    return Principal(user=user, grants=[Grant(r.role_name, r.scope_type, r.scope_id) for r in rows])


def _relationship_roles(session: Session, principal: Principal, course_id: uuid.UUID) -> frozenset[str]:
    cached = principal._course_roles.get(course_id)
    if cached is not None:
        return cached
    roles: set[str] = set()
    course = session.get(Course, course_id)
    if course is not None and principal.id in (course.instructor_id, course.created_by):
        roles.add("instructor")
    # A learner's role lasts while the course is published and after it is archived (they keep reading what they
    # took); a course moved back to draft or review is hidden from its learners, as GET /courses/{id} hides it.
    if course is not None and course.status in LEARNER_COURSE_STATUSES:
        enrolled = session.scalar(select(Enrollment.status).where(
            Enrollment.user_id == principal.id, Enrollment.course_id == course_id))
        if enrolled in LEARNER_ENROLLMENT_STATUSES:
            roles.add("student")
    principal._course_roles[course_id] = frozenset(roles)
    return principal._course_roles[course_id]


def permissions_in(session: Session, principal: Principal, scope: Scope = GLOBAL) -> frozenset[Permission]:
    """Every permission the caller holds for a resource in ``scope``."""
    if principal.user.status is not UserStatus.active:
        return frozenset()
    granted = set(principal.global_permissions())
    for grant in principal.grants:
        if grant.scope_type is not ScopeType.global_ and grant.applies_to(scope):
            granted |= ROLE_PERMISSIONS.get(grant.role_name, frozenset())
    if scope.course_id is not None:
        for role in _relationship_roles(session, principal, scope.course_id):
            granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def has_permission(session: Session, principal: Principal, permission: Permission, scope: Scope = GLOBAL) -> bool:
    return permission in permissions_in(session, principal, scope)


def authorize(session: Session, principal: Principal | None, permission: Permission, scope: Scope = GLOBAL,
              *, what: str = "this resource") -> None:
    """Raise PermissionDenied unless the caller holds ``permission`` in ``scope``.

    ``principal=None`` is the trusted system (CLI, imports through ``platform_api.api``), never a request.
    """
    if principal is None:
        return
    if not has_permission(session, principal, permission, scope):
        where = f" in course {scope.course_id}" if scope.course_id else ""
        raise PermissionDenied(
            f"You lack the permission '{permission.value}' for {what}{where}; ask an admin or the course's "
            "instructor for a role that grants it (POST /api/v1/users/{id}/roles)",
            details={"permission": permission.value, "course_id": str(scope.course_id) if scope.course_id else None})


def require_global(principal: Principal | None, permission: Permission) -> None:
    if principal is None:
        return
    if principal.user.status is not UserStatus.active or permission not in principal.global_permissions():
        raise PermissionDenied(
            f"You lack the permission '{permission.value}'; ask an admin for a role that grants it",
            details={"permission": permission.value})


def is_course_staff(session: Session, principal: Principal | None, course: Course) -> bool:
    if principal is None:
        return True
    return has_permission(session, principal, P.submissions_read, Scope.of_course(course))


def can_view_submission(session: Session, principal: Principal | None, *, owner_id: uuid.UUID,
                        course: Course) -> bool:
    """FERPA: the learner themself, or staff of the submission's course, and nobody else."""
    if principal is None:
        return True
    return owner_id == principal.id or is_course_staff(session, principal, course)


def can_view_user(session: Session, principal: Principal | None, target_id: uuid.UUID) -> bool:
    """Yourself, a global users:read holder, or staff of a course the target is enrolled in."""
    if principal is None:
        return True
    if target_id == principal.id or P.users_read in principal.global_permissions():
        return True
    course_ids: Iterable[uuid.UUID] = session.scalars(
        select(Enrollment.course_id).where(Enrollment.user_id == target_id)).all()
    for course_id in course_ids:
        course = session.get(Course, course_id)
        if course is not None and has_permission(session, principal, P.users_read, Scope.of_course(course)):
            return True
    return False
