"""User accounts, login, role grants, and GDPR erasure/export."""

from __future__ import annotations

import functools
import hashlib
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from learnloop.settings import Settings
from platform_api import _audit, _courses, policy
from platform_api._assessments import public_status
from platform_api._db import get_or_not_found, paginate
from platform_api._models import (
    AuditLog,
    Course,
    Enrollment,
    Grade,
    OutboxEvent,
    Submission,
    User,
    UserRoleGrant,
)
from platform_api._outbox import emit
from platform_api._schemas import RoleGrantCreate, TokenPair, UserCreate, UserUpdate
from platform_api._security import (
    TokenType,
    Unauthenticated,
    check_password_stamp,
    decode_token,
    hash_password,
    issue_token,
    verify_password,
)
from platform_api.data import ScopeType, SubmissionStatus, UserRole, UserStatus
from platform_api.policy import Permission, Principal, Scope


@functools.cache
def _dummy_hash() -> str:
    return hash_password("timing-equaliser-not-a-password")


def _email_taken(session: Session, email: str, *, except_id: uuid.UUID | None = None) -> bool:
    found = session.scalar(select(User.id).where(User.email == email))
    return found is not None and found != except_id


def create_user(*, session: Session, actor: Principal | None, data: UserCreate) -> User:
    policy.require_global(actor, Permission.users_create)
    if _email_taken(session, data.email):
        raise Conflict(f"A user with email {data.email} already exists; log in or choose another email",
                       details={"field": "email"})
    user = User(email=data.email, name=data.name, role=data.role, status=UserStatus.active,
                password_hash=hash_password(data.password), metadata_=data.metadata)
    session.add(user)
    session.flush()
    emit(session, event_type="user.created", user_id=user.id, payload={"role": user.role.value})
    _audit.record(session, actor_id=actor.id if actor else None, action="user.create", resource_type="user",
                  resource_id=user.id, details={"role": user.role.value})
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent request took the email between check and insert
        session.rollback()
        raise Conflict(f"A user with email {data.email} already exists", details={"field": "email"}) from exc
    return user


def _tokens(*, session: Session, settings: Settings, user: User) -> TokenPair:
    principal = policy.load_principal(session, user)
    access, expires = issue_token(settings=settings, user_id=user.id, token_type=TokenType.access,
                                  password_hash=user.password_hash, roles=principal.role_labels(),
                                  permissions=sorted(p.value for p in principal.global_permissions()))
    refresh, _ = issue_token(settings=settings, user_id=user.id, token_type=TokenType.refresh,
                             password_hash=user.password_hash)
    return TokenPair(access_token=access, refresh_token=refresh, expires_at=expires, user_id=user.id)


def login(*, session: Session, settings: Settings, email: str, password: str) -> TokenPair:
    user = session.scalar(select(User).where(User.email == email.lower()))
    if user is None:
        verify_password(password, _dummy_hash())  # same cost whether or not the email exists
        raise Unauthenticated("Wrong email or password; check both and try again")
    if not verify_password(password, user.password_hash):
        raise Unauthenticated("Wrong email or password; check both and try again")
    if user.status is not UserStatus.active:
        raise PermissionDenied(f"This account is {user.status.value}; contact an administrator")
    return _tokens(session=session, settings=settings, user=user)


def authenticate(*, session: Session, settings: Settings, token: str, expected: TokenType) -> User:
    """The active user a token names, unless the token was issued before their password changed or the account
    was erased or deactivated (then Unauthenticated). Bearer tokens, page cookies and refresh all come here."""
    claims = decode_token(settings=settings, token=token, expected=expected)
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise Unauthenticated("The token names no valid user; log in again") from exc
    user = session.get(User, user_id)
    if user is None or user.status is not UserStatus.active:
        raise Unauthenticated("This account no longer exists or is not active; contact an administrator")
    check_password_stamp(settings=settings, claims=claims, password_hash=user.password_hash)
    return user


def refresh(*, session: Session, settings: Settings, refresh_token: str) -> TokenPair:
    user = authenticate(session=session, settings=settings, token=refresh_token, expected=TokenType.refresh)
    return _tokens(session=session, settings=settings, user=user)


def get_user(*, session: Session, actor: Principal | None, user_id: uuid.UUID) -> User:
    user = get_or_not_found(session, User, user_id, "User")
    if not policy.can_view_user(session, actor, user_id):
        raise PermissionDenied("You may only see your own profile or learners in courses you teach")
    return user


def list_users(*, session: Session, actor: Principal | None, role: UserRole | None, status: UserStatus | None,
               limit: int, offset: int) -> tuple[list[User], int]:
    policy.require_global(actor, Permission.users_list)
    statement = select(User).order_by(User.created_at, User.id)
    if role is not None:
        statement = statement.where(User.role == role)
    if status is not None:
        statement = statement.where(User.status == status)
    return paginate(session, statement, limit=limit, offset=offset)


def _with_admin_managed_keys(*, current: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    """The metadata a user may write about themself: ``requested`` with the access-relevant keys
    (``policy.ADMIN_MANAGED_USER_METADATA``) kept as stored. Leaving such a key out keeps it; setting it to
    another value is refused, naming the key."""
    merged = dict(requested)
    for key, why in policy.ADMIN_MANAGED_USER_METADATA.items():
        if key in requested and requested[key] != current.get(key):
            raise PermissionDenied(f"Only an administrator may set metadata.{key} ({why}); leave it out of your "
                                   "update or ask an administrator", details={"field": f"metadata.{key}"})
        if key in current:
            merged[key] = current[key]
    return merged


def update_user(*, session: Session, actor: Principal | None, user_id: uuid.UUID, data: UserUpdate) -> User:
    user = get_or_not_found(session, User, user_id, "User")
    is_self = actor is not None and actor.id == user_id
    may_administer = actor is None or Permission.users_update in actor.global_permissions()
    if not (is_self or may_administer):
        raise PermissionDenied("You may only update your own profile")
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if ("status" in changes or "role" in changes) and not may_administer:
        raise PermissionDenied("Only an administrator may change a user's status or role")
    if "metadata" in changes and not may_administer:
        changes["metadata"] = _with_admin_managed_keys(current=user.metadata_ or {}, requested=changes["metadata"])
    if "email" in changes and _email_taken(session, changes["email"], except_id=user.id):
        raise Conflict(f"A user with email {changes['email']} already exists", details={"field": "email"})
    for field, value in changes.items():
        if field == "password":
            user.password_hash = hash_password(value)
        elif field == "metadata":
            user.metadata_ = value
        else:
            setattr(user, field, value)
    changed = sorted(k for k in changes if k != "password") + (["password"] if "password" in changes else [])
    emit(session, event_type="user.updated", user_id=user.id, payload={"fields": changed})
    _audit.record(session, actor_id=actor.id if actor else None, action="user.update", resource_type="user",
                  resource_id=user.id, details={"fields": changed})
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("That email is already taken", details={"field": "email"}) from exc
    return user


def _existing_grant(session: Session, *, user_id: uuid.UUID, role_name: str, scope_type: ScopeType,
                    scope_id: str | None) -> uuid.UUID | None:
    return session.scalar(select(UserRoleGrant.id).where(
        UserRoleGrant.user_id == user_id, UserRoleGrant.role_name == role_name, UserRoleGrant.scope_type == scope_type,
        UserRoleGrant.scope_id.is_(None) if scope_id is None else UserRoleGrant.scope_id == scope_id))


def assign_role(*, session: Session, actor: Principal | None, user_id: uuid.UUID,
                data: RoleGrantCreate) -> UserRoleGrant:
    """Grant a role in a scope. A course grant's ``scope_id`` is stored as the canonical course id (lower-case,
    dashed), whatever UUID spelling was sent, so it applies and duplicates are found. A grant the user already
    holds is a Conflict (409), also when two identical requests race (the database's unique indexes decide)."""
    get_or_not_found(session, User, user_id, "User")
    scope_id = data.scope_id
    if data.scope_type is ScopeType.course:
        try:
            course_id = uuid.UUID(data.scope_id or "")
        except ValueError as exc:
            raise InvalidInput("scope_id of a course grant must be a course id (UUID)",
                               details={"field": "scope_id"}) from exc
        course = get_or_not_found(session, Course, course_id, "Course")
        scope_id = str(course.id)
        # A course's instructor may staff their own course (TAs, co-instructors, invited students).
        if not (actor is None or Permission.roles_assign in actor.global_permissions()):
            policy.authorize(session, actor, Permission.enrollments_manage, Scope.of_course(course),
                             what="granting roles")
            if data.role_name == "admin":
                raise PermissionDenied("Only an administrator may grant the admin role")
    else:
        policy.require_global(actor, Permission.roles_assign)
    duplicate = Conflict(f"User {user_id} already has role {data.role_name} in that scope")
    if _existing_grant(session, user_id=user_id, role_name=data.role_name, scope_type=data.scope_type,
                       scope_id=scope_id) is not None:
        raise duplicate
    grant = UserRoleGrant(user_id=user_id, role_name=data.role_name, scope_type=data.scope_type, scope_id=scope_id)
    session.add(grant)
    try:
        session.flush()
    except IntegrityError as exc:  # an identical request committed between the check and this insert
        session.rollback()
        raise duplicate from exc
    emit(session, event_type="user.role_granted", user_id=user_id,
         course_id=scope_id if data.scope_type is ScopeType.course else None,
         payload={"role_name": data.role_name, "scope_type": data.scope_type.value, "scope_id": scope_id})
    _audit.record(session, actor_id=actor.id if actor else None, action="role.grant", resource_type="user",
                  resource_id=user_id, details={"role_name": data.role_name, "scope_type": data.scope_type.value,
                                                "scope_id": scope_id})
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise duplicate from exc
    return grant


def user_permissions(*, session: Session, actor: Principal | None, user_id: uuid.UUID,
                     course_id: uuid.UUID | None) -> dict[str, Any]:
    user = get_user(session=session, actor=actor, user_id=user_id)
    target = policy.load_principal(session, user)
    scope = policy.GLOBAL
    if course_id is not None:
        # 404 for a course the caller may not see, as GET /courses/{id}: the answer must not reveal it exists.
        scope = Scope.of_course(_courses.get_course(session=session, actor=actor, course_id=course_id))
    permissions = policy.permissions_in(session, target, scope)
    return {"user_id": user.id, "role": user.role, "roles": target.role_labels(),
            "permissions": sorted(p.value for p in permissions), "course_id": course_id}


def pseudonym(settings: Settings, user_id: uuid.UUID) -> str:
    """Stable, non-reversible stand-in for a user id in erased data (keyed by the secret)."""
    digest = hashlib.sha256(f"{settings.secret_key.get_secret_value()}:{user_id}".encode()).hexdigest()
    return f"erased-{digest[:24]}"


def erase_user(*, session: Session, settings: Settings, actor: Principal | None, user_id: uuid.UUID) -> None:
    """GDPR erasure: strip personal fields, drop grants, blank free-text answers, pseudonymise events."""
    user = get_or_not_found(session, User, user_id, "User")
    if not (actor is None or actor.id == user_id or Permission.users_delete in actor.global_permissions()):
        raise PermissionDenied("Only the user themself or an administrator may erase an account")
    alias = pseudonym(settings, user_id)
    user.email = f"{alias}@erased.invalid"
    user.name = "Erased user"
    user.metadata_ = {"erased": True}
    user.password_hash = None
    user.status = UserStatus.inactive
    session.execute(delete(UserRoleGrant).where(UserRoleGrant.user_id == user_id))
    for submission in session.scalars(select(Submission).where(Submission.user_id == user_id)):
        submission.answers = {"erased": True}
    for row in session.scalars(select(OutboxEvent).where(OutboxEvent.user_id == str(user_id))):
        row.user_id = alias
        row.envelope = {**row.envelope, "user_id": alias}
    emit(session, event_type="user.erased", user_id=alias, payload={})
    _audit.record(session, actor_id=actor.id if actor else None, action="user.erase", resource_type="user",
                  resource_id=alias)
    session.commit()


# What the product shows only to staff about a learner, left out of the learner's export: the AI's grading work
# (suggestions, essays it could not grade) until staff decide, and at-risk alerts with their outcomes.
STAFF_ONLY_EVENTS = frozenset({"grade.suggested", "grade.needs_manual_grading", "enrollment.alert_raised",
                               "enrollment.alert_outcome", "enrollment.alert_superseded"})
# AI working notes a staff decision keeps (the suggestion's score and id, the queue state before the decision).
_AI_NOTES = frozenset({"ai_score", "ai_grade_id", "previous_status"})


def _without_ai_notes(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in _AI_NOTES}


def _learner_event(envelope: dict[str, Any]) -> dict[str, Any]:
    payload = envelope.get("payload") or {}
    if envelope.get("event_type") == "submission.graded":
        return {**envelope, "payload": _without_ai_notes(payload)}
    if envelope.get("event_type") == "submission.created" and "status" in payload:
        try:  # the status the learner reads (in_review until graded), as on the submission itself
            status = public_status(SubmissionStatus(payload["status"]), staff=False).value
        except ValueError:
            return envelope
        return {**envelope, "payload": {**payload, "status": status}}
    return envelope


def export_user(*, session: Session, actor: Principal | None, user_id: uuid.UUID) -> dict[str, Any]:
    """Everything the platform holds about a user, as JSON-ready data (GDPR access/portability).

    It is the data subject's view, whoever asks (the user or an administrator on their behalf): what the product
    hides from learners stays out — AI grading suggestions and their notes (``STAFF_ONLY_EVENTS``), at-risk alerts
    and their outcomes, and a submission that is not graded yet reads ``in_review`` (queued for the AI or with an
    AI suggestion alike) until staff decide. Staff see those through the grading queue and the alerts API, not
    through this export."""
    user = get_or_not_found(session, User, user_id, "User")
    if not (actor is None or actor.id == user_id or Permission.users_export in actor.global_permissions()):
        raise PermissionDenied("Only the user themself or an administrator may export an account")
    from platform_api._schemas import EnrollmentPublic, GradePublic, RoleGrantPublic, UserPublic

    submissions = []
    for submission in session.scalars(select(Submission).where(Submission.user_id == user_id)
                                      .order_by(Submission.submitted_at)):
        # The learner's own export shows final grades only; AI suggestions are staff working notes.
        final = session.scalars(select(Grade).where(Grade.submission_id == submission.id, Grade.is_final)).all()
        graded = submission.status is SubmissionStatus.graded
        submissions.append({
            "id": str(submission.id), "assessment_id": str(submission.assessment_id),
            "course_id": str(submission.course_id),
            "status": public_status(submission.status, staff=False).value,  # the data subject's view
            "answers": submission.answers, "submitted_at": submission.submitted_at.isoformat(),
            "grades": [{**public, "details": _without_ai_notes(public["details"])} for public in
                       (GradePublic.model_validate(g).model_dump(mode="json") for g in final)] if graded else [],
        })
    return {
        "user": UserPublic.model_validate(user).model_dump(mode="json"),
        "roles": [RoleGrantPublic.model_validate(g).model_dump(mode="json") for g in
                  session.scalars(select(UserRoleGrant).where(UserRoleGrant.user_id == user_id))],
        "enrollments": [EnrollmentPublic.model_validate(e).model_dump(mode="json") for e in
                        session.scalars(select(Enrollment).where(Enrollment.user_id == user_id))],
        "submissions": submissions,
        "events": [_learner_event(row.envelope) for row in session.scalars(
            select(OutboxEvent).where(OutboxEvent.user_id == str(user_id),
                                      OutboxEvent.event_type.not_in(STAFF_ONLY_EVENTS)).order_by(OutboxEvent.id))],
        "audit": [{"action": a.action, "resource_type": a.resource_type, "resource_id": a.resource_id,
                   "created_at": a.created_at.isoformat()} for a in
                  session.scalars(select(AuditLog).where(AuditLog.actor_id == user_id).order_by(AuditLog.id))],
    }


def bootstrap_admin(*, session: Session, email: str, name: str, password: str) -> User:
    """Create the first admin (CLI); refuses if the email exists."""
    if _email_taken(session, email.lower()):
        raise Conflict(f"A user with email {email} already exists")
    return create_user(session=session, actor=None,
                       data=UserCreate(email=email, name=name, password=password, role=UserRole.admin))


def user_exists(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"User {user_id} does not exist")
    return user
