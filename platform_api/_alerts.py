"""At-risk alerts: raised by the interventions job (``pipelines.interventions`` through ``platform_api.api``),
listed for and acted on by course staff, reported, and exported as labels for the next training run.

Who sees what (FERPA): an alert names a learner and their risk, so only the course's staff (instructor, TAs,
admins) may list it, act on it or read its report. **Learners see nothing of alerts** — not even their own:
an alert is a note to staff about a model's guess, and showing "the system thinks you will fail" to a learner
risks the self-fulfilling effect early-warning research warns about; a learner who wants their score has
``GET /api/v1/users/{id}/risk`` (own risk only).

Every outcome is stored (``alert_outcomes``, history kept; the alert's ``status`` is the latest), audited, and
emitted as ``enrollment.alert_outcome`` (the note stays in the database: free text is not broadcast).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from platform_api import _audit, _courses, policy
from platform_api._db import get_or_not_found
from platform_api._models import Alert, AlertOutcomeRecord, Course, Enrollment, User
from platform_api._outbox import emit
from platform_api.data import (
    AlertAction,
    AlertLabel,
    AlertOutcome,
    AlertStatus,
    CourseStatus,
    EnrollmentStatus,
    NewAlert,
    PriorAlert,
    ScoringTarget,
    UserStatus,
)
from platform_api.policy import Permission, Principal

STUDENT_KEY = "id_student"  # same keys as platform_api._risk
COURSE_KEY = "presentation"


@dataclass(frozen=True)
class AlertView:
    """An alert with the learner's name, for staff."""

    alert: Alert
    learner_name: str
    learner_email: str


# --------------------------------------------------------------------------- staff-facing
def _staff_course(session: Session, actor: Principal | None, course_id: uuid.UUID) -> Course:
    course = _courses.get_course(session=session, actor=actor, course_id=course_id)
    if not policy.is_course_staff(session, actor, course):
        raise PermissionDenied("Only the course's staff may see or act on its at-risk alerts",
                               details={"course_id": str(course.id)})
    return course


def list_course_alerts(*, session: Session, actor: Principal | None, course_id: uuid.UUID,
                       status: AlertStatus | None, limit: int, offset: int) -> tuple[list[AlertView], int]:
    """The course's alerts, highest risk first (newest first among equal risks); course staff only."""
    course = _staff_course(session, actor, course_id)
    where = [Alert.course_id == course.id]
    if status is not None:
        where.append(Alert.status == status)
    total = session.scalar(select(func.count()).select_from(Alert).where(*where)) or 0
    rows = session.execute(
        select(Alert, User.name, User.email).join(User, User.id == Alert.user_id).where(*where)
        .order_by(Alert.risk_score.desc(), Alert.created_at.desc(), Alert.id).limit(limit).offset(offset)).all()
    return [AlertView(alert, name, email) for alert, name, email in rows], total


def get_alert(*, session: Session, actor: Principal | None, alert_id: uuid.UUID) -> AlertView:
    alert = get_or_not_found(session, Alert, alert_id, "Alert", "list a course's alerts with "
                             "GET /api/v1/courses/{id}/alerts")
    _staff_course(session, actor, alert.course_id)
    learner = session.get(User, alert.user_id)
    return AlertView(alert, learner.name if learner else "", learner.email if learner else "")


def record_outcome(*, session: Session, actor: Principal | None, alert_id: uuid.UUID, outcome: AlertOutcome,
                   action: AlertAction | None, note: str, open_only: bool = False) -> AlertView:
    """Store what staff did with an alert; ``action`` is required for (and only for) ``action_taken``.

    ``open_only`` (the alerts page, which offers decisions on open alerts only): refuse with Conflict when the alert
    was resolved after the page was loaded, instead of replacing a colleague's verdict. The JSON API may change a
    verdict on purpose (the history keeps both)."""
    view = get_alert(session=session, actor=actor, alert_id=alert_id)
    alert = view.alert
    if alert.status is AlertStatus.superseded:
        raise InvalidInput("This alert was superseded by a newer alert for the same learner; record the outcome "
                           "on the open one (GET /api/v1/courses/{id}/alerts?status=open)",
                           details={"alert_id": str(alert.id)})
    if outcome is AlertOutcome.action_taken and action is None:
        raise InvalidInput("Say which action you took: 'action' must be one of "
                           f"{', '.join(a.value for a in AlertAction)} when the outcome is action_taken",
                           details={"field": "action"})
    if outcome is not AlertOutcome.action_taken and action is not None:
        raise InvalidInput(f"'action' is only for the outcome action_taken (got outcome {outcome.value}); "
                           "leave it out or record action_taken", details={"field": "action"})
    if open_only:
        # Checked by a conditional UPDATE in the transaction that records the outcome: the row stays locked
        # (PostgreSQL) or the database write-locked (SQLite) until the commit, so of two staff posting at the same
        # moment the second waits, then finds the alert resolved and is refused instead of replacing the verdict.
        still_open = session.execute(
            update(Alert).where(Alert.id == alert.id, Alert.status == AlertStatus.open)
            .values(status=Alert.status).execution_options(synchronize_session=False)).rowcount
        alert = session.scalar(select(Alert).where(Alert.id == alert.id)
                               .execution_options(populate_existing=True))
        if still_open != 1:
            session.rollback()
            decided_by = session.get(User, alert.resolved_by) if alert.resolved_by else None
            raise Conflict(f"The alert for {view.learner_name} was already marked "
                           f"{alert.status.value.replace('_', ' ')}{f' by {decided_by.name}' if decided_by else ''} "
                           "after this page was loaded; your decision was not saved. Reload the alerts to see the "
                           "open ones.", details={"alert_id": str(alert.id), "status": alert.status.value})
    now = datetime.now(UTC)
    actor_id = actor.id if actor is not None else None
    session.add(AlertOutcomeRecord(alert_id=alert.id, outcome=outcome, action=action, note=note,
                                   actor_id=actor_id, created_at=now))
    previous = alert.status
    alert.status = AlertStatus(outcome.value)
    alert.resolved_at = now
    alert.resolved_by = actor_id
    _audit.record(session, actor_id=actor_id, action="alert.outcome", resource_type="alert", resource_id=alert.id,
                  details={"outcome": outcome.value, "action": action.value if action else None,
                           "previous_status": previous.value, "note_chars": len(note)})
    emit(session, event_type="enrollment.alert_outcome", user_id=alert.user_id, course_id=alert.course_id,
         payload={"alert_id": str(alert.id), "enrollment_id": str(alert.enrollment_id), "outcome": outcome.value,
                  "action": action.value if action else None, "risk_score": alert.risk_score,
                  "model_name": alert.model_name, "model_version": alert.model_version,
                  "recorded_by": str(actor_id) if actor_id else None})
    session.commit()
    return view


def report(*, session: Session, actor: Principal | None, course_id: uuid.UUID | None) -> dict:
    """Counts by status and by action taken, and how useful staff found the alerts.

    ``share_useful`` = 1 − not_useful / resolved (an alert dismissed as "no action needed now" still told staff
    something true); ``share_acted`` = action_taken / resolved. Both are null until an alert is resolved. Per
    course for its staff; across every course (``course_id`` None) for operators.
    """
    if course_id is not None:
        _staff_course(session, actor, course_id)
    else:
        policy.require_global(actor, Permission.operator_read)
    where = [Alert.course_id == course_id] if course_id is not None else []
    by_status = Counter({status: count for status, count in session.execute(
        select(Alert.status, func.count()).where(*where).group_by(Alert.status))})
    # The latest outcome of each resolved alert says which action was taken.
    latest = (select(AlertOutcomeRecord.alert_id, func.max(AlertOutcomeRecord.created_at).label("at"))
              .group_by(AlertOutcomeRecord.alert_id).subquery())
    actions = select(AlertOutcomeRecord.action, func.count()).join(
        latest, (latest.c.alert_id == AlertOutcomeRecord.alert_id) & (latest.c.at == AlertOutcomeRecord.created_at)
    ).join(Alert, Alert.id == AlertOutcomeRecord.alert_id).where(
        AlertOutcomeRecord.outcome == AlertOutcome.action_taken, *where).group_by(AlertOutcomeRecord.action)
    by_action = {action.value: count for action, count in session.execute(actions) if action is not None}
    # Superseded alerts were replaced by a newer alert of the same learner, not judged by staff.
    resolved = sum(by_status[s] for s in AlertStatus if s not in (AlertStatus.open, AlertStatus.superseded))
    total = sum(by_status.values())
    return {
        "course_id": str(course_id) if course_id else None,
        "total": total,
        "by_status": {s.value: int(by_status[s]) for s in AlertStatus},
        "by_action": {a.value: int(by_action.get(a.value, 0)) for a in AlertAction},
        "resolved": resolved,
        "share_resolved": round(resolved / total, 4) if total else None,
        "share_useful": round(1 - by_status[AlertStatus.not_useful] / resolved, 4) if resolved else None,
        "share_acted": round(by_status[AlertStatus.action_taken] / resolved, 4) if resolved else None,
    }


def staff_courses(*, session: Session, actor: Principal) -> list[tuple[Course, int]]:
    """Courses where the caller is staff (by relationship or grant), with their open-alert counts."""
    candidates = session.scalars(select(Course).where(Course.status != CourseStatus.archived)
                                 .order_by(Course.title, Course.id)).all()
    open_counts = dict(session.execute(select(Alert.course_id, func.count()).where(
        Alert.status == AlertStatus.open).group_by(Alert.course_id)).all())
    return [(course, int(open_counts.get(course.id, 0))) for course in candidates
            if policy.is_course_staff(session, actor, course)]


def open_alert_counts(*, session: Session, course_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Open alerts per course (courses without any are left out)."""
    wanted = list(set(course_ids))
    if not wanted:
        return {}
    return {course: int(count) for course, count in session.execute(
        select(Alert.course_id, func.count()).where(Alert.status == AlertStatus.open, Alert.course_id.in_(wanted))
        .group_by(Alert.course_id))}


# --------------------------------------------------------------------------- the trusted job (actor=None)
def linked_records(*, session: Session, id_students: Iterable[int],
                   presentation: str) -> tuple[dict[int, uuid.UUID], uuid.UUID | None]:
    """Platform users already linked to these OULAD students (``metadata.id_student``) and the course already
    linked to ``presentation`` (``metadata.presentation``; the oldest when several), e.g. from
    ``learnloop data import oulad``, so callers reuse them instead of creating duplicates."""
    wanted = sorted({int(s) for s in id_students})
    users: dict[int, uuid.UUID] = {}
    key = User.metadata_[STUDENT_KEY]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        rows = session.execute(select(User.id, key.as_integer()).where(
            key.as_integer().in_(chunk)).order_by(User.created_at, User.id)).all()
        for user_id, student in rows:
            users.setdefault(int(student), user_id)  # the oldest wins if a student was linked twice
    course = session.scalar(select(Course.id).where(Course.metadata_[COURSE_KEY].as_string() == presentation)
                            .order_by(Course.created_at, Course.id).limit(1))
    return users, course


def scoring_targets(*, session: Session, course_id: uuid.UUID | None = None,
                    statuses: Iterable[EnrollmentStatus] = (EnrollmentStatus.enrolled,)) -> list[ScoringTarget]:
    """Enrollments to score: in ``statuses`` (active = enrolled), of active users, in courses not archived."""
    statement = (select(Enrollment.id, Enrollment.user_id, Enrollment.course_id, User.metadata_, Course.metadata_)
                 .join(User, User.id == Enrollment.user_id).join(Course, Course.id == Enrollment.course_id)
                 .where(Enrollment.status.in_(list(statuses)), User.status == UserStatus.active,
                        Course.status != CourseStatus.archived)
                 .order_by(Enrollment.course_id, Enrollment.id))
    if course_id is not None:
        get_or_not_found(session, Course, course_id, "Course")
        statement = statement.where(Enrollment.course_id == course_id)
    targets = []
    for enrollment_id, user_id, course, user_meta, course_meta in session.execute(statement):
        student = (user_meta or {}).get(STUDENT_KEY)
        presentation = (course_meta or {}).get(COURSE_KEY)
        linked_student = (int(student) if not isinstance(student, bool) and isinstance(student, int | str)
                          and str(student).isdigit() else None)
        targets.append(ScoringTarget(enrollment_id=enrollment_id, user_id=user_id, course_id=course,
                                     id_student=linked_student,
                                     presentation=presentation if isinstance(presentation, str) and presentation
                                     else None))
    return targets


def latest_alerts(*, session: Session, enrollment_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, PriorAlert]:
    """The newest alert of each enrollment that has one."""
    wanted = list(enrollment_ids)
    found: dict[uuid.UUID, PriorAlert] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start:start + 500]
        rows = session.execute(select(Alert.id, Alert.enrollment_id, Alert.risk_score, Alert.status, Alert.created_at)
                               .where(Alert.enrollment_id.in_(chunk)).order_by(Alert.created_at)).all()
        for alert_id, enrollment_id, risk, status, created_at in rows:  # ascending: the last one wins
            created = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
            found[enrollment_id] = PriorAlert(alert_id, enrollment_id, float(risk), status, created)
    return found


def record_alerts(*, session: Session, alerts: Iterable[NewAlert], now: datetime | None = None) -> list[uuid.UUID]:
    """Insert alerts (one ``enrollment.alert_raised`` event each) in one transaction."""
    now = now or datetime.now(UTC)
    batch = list(alerts)
    enrollments = {}
    ids = [a.enrollment_id for a in batch]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in session.scalars(select(Enrollment).where(Enrollment.id.in_(chunk))):
            enrollments[row.id] = row
    for new in batch:
        if enrollments.get(new.enrollment_id) is None:
            raise NotFound(f"Enrollment {new.enrollment_id} does not exist; score current enrollments only")
        if not 0.0 <= new.risk_score <= 1.0:
            raise InvalidInput(f"risk_score {new.risk_score} of enrollment {new.enrollment_id} is not in [0, 1]")
    # A re-alert (after the cooldown) replaces the enrollment's open alert: staff see one open alert per learner
    # and course. The older one is closed as ``superseded`` (not a staff verdict: no outcome row, no label).
    superseded = []
    for start in range(0, len(ids), 500):
        superseded += session.scalars(select(Alert).where(Alert.enrollment_id.in_(ids[start:start + 500]),
                                                          Alert.status == AlertStatus.open)).all()
    created = []
    replaced: dict[uuid.UUID, list[Alert]] = {}
    for old in superseded:
        replaced.setdefault(old.enrollment_id, []).append(old)
    for new in batch:
        enrollment = enrollments[new.enrollment_id]
        alert = Alert(id=uuid.uuid4(), enrollment_id=enrollment.id, user_id=enrollment.user_id,
                      course_id=enrollment.course_id, risk_score=float(new.risk_score), threshold=float(new.threshold),
                      model_name=new.model_name, model_version=str(new.model_version), drivers=list(new.drivers),
                      actions=[{**a, "kind": str(a["kind"])} for a in new.actions], status=AlertStatus.open,
                      created_at=now)
        session.add(alert)
        for old in replaced.pop(enrollment.id, []):
            old.status = AlertStatus.superseded
            old.resolved_at = now
            emit(session, event_type="enrollment.alert_superseded", user_id=old.user_id, course_id=old.course_id,
                 source_service="pipelines.interventions",
                 payload={"alert_id": str(old.id), "enrollment_id": str(old.enrollment_id),
                          "superseded_by": str(alert.id)})
        emit(session, event_type="enrollment.alert_raised", user_id=alert.user_id, course_id=alert.course_id,
             source_service="pipelines.interventions",
             payload={"alert_id": str(alert.id), "enrollment_id": str(alert.enrollment_id),
                      "risk_score": alert.risk_score, "threshold": alert.threshold, "model_name": alert.model_name,
                      "model_version": alert.model_version, "drivers": [d.get("key") for d in alert.drivers],
                      "actions": [a["kind"] for a in alert.actions]})
        created.append(alert.id)
    session.commit()
    return created


def outcome_labels(*, session: Session, since: datetime | None = None) -> list[AlertLabel]:
    """Every resolved alert with its learner/course model keys and staff verdict (labels for training)."""
    statement = (select(Alert, User.metadata_, Course.metadata_).join(User, User.id == Alert.user_id)
                 .join(Course, Course.id == Alert.course_id).where(Alert.status.not_in([AlertStatus.open, AlertStatus.superseded]))
                 .order_by(Alert.resolved_at, Alert.id))
    if since is not None:
        statement = statement.where(Alert.resolved_at >= since)
    rows = session.execute(statement).all()
    last_action = {}
    if rows:
        for alert_id, action in session.execute(
                select(AlertOutcomeRecord.alert_id, AlertOutcomeRecord.action)
                .where(AlertOutcomeRecord.alert_id.in_([r[0].id for r in rows]))
                .order_by(AlertOutcomeRecord.created_at)):
            last_action[alert_id] = action.value if action is not None else None
    labels = []
    for alert, user_meta, course_meta in rows:
        student = (user_meta or {}).get(STUDENT_KEY)
        labels.append(AlertLabel(
            alert_id=alert.id, id_student=int(student) if str(student).isdigit() else None,
            presentation=(course_meta or {}).get(COURSE_KEY), risk_score=alert.risk_score,
            model_version=alert.model_version, outcome=alert.status, action=last_action.get(alert.id),
            raised_at=alert.created_at, resolved_at=alert.resolved_at))
    return labels


def next_due_assessments(*, session: Session, course_ids: Iterable[uuid.UUID],
                         now: datetime | None = None) -> dict[uuid.UUID, dict]:
    """Per course, the next assessment with a due date after ``now`` (what "extend a deadline" would move)."""
    from platform_api._models import Assessment

    now = now or datetime.now(UTC)
    wanted = list(set(course_ids))
    found: dict[uuid.UUID, dict] = {}
    for start in range(0, len(wanted), 500):
        rows = session.execute(select(Assessment.course_id, Assessment.id, Assessment.title, Assessment.due_at)
                               .where(Assessment.course_id.in_(wanted[start:start + 500]),
                                      Assessment.due_at.is_not(None), Assessment.due_at > now)
                               .order_by(Assessment.due_at)).all()
        for course_id, assessment_id, title, due_at in rows:
            if course_id not in found:
                due = due_at if due_at.tzinfo else due_at.replace(tzinfo=UTC)
                found[course_id] = {"assessment_id": str(assessment_id), "title": title, "due_at": due.isoformat()}
    return found


def courses_with_content(*, session: Session, course_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The courses among ``course_ids`` that hold at least one content item."""
    from platform_api._models import ContentItem

    wanted = list(set(course_ids))
    found: set[uuid.UUID] = set()
    for start in range(0, len(wanted), 500):
        found |= set(session.scalars(select(ContentItem.course_id).where(
            ContentItem.course_id.in_(wanted[start:start + 500])).distinct()))
    return found
