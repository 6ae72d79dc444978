"""A re-alert after the cooldown closes the enrollment's older open alert (``superseded``): at most one open
alert per learner and course; superseded alerts are no staff verdict (not resolved in the report, no label) and
cannot be acted on. Also the lookup the demo uses to reuse OULAD-linked users/courses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest


def _alert(enrollment_id: uuid.UUID, risk: float):
    from platform_api.data import NewAlert

    return NewAlert(enrollment_id=enrollment_id, risk_score=risk, threshold=0.7, model_name="risk", model_version="1",
                    drivers=[{"key": "inactivity", "text": "no activity in 20 days", "contribution": 0.2}],
                    actions=[{"kind": "message_learner", "label": "Message the learner", "details": {}}])


@pytest.fixture
def platform(settings):
    from platform_api.api import create_courses, create_users, enroll_users, open_session
    from platform_api.data import NewCourse, NewEnrollment, NewUser, UserRole

    teacher, ada, bo = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    course = uuid.uuid4()
    with open_session(settings) as session:
        create_users(session=session, users=[
            NewUser(email="t@example.org", name="T", role=UserRole.instructor, id=teacher),
            NewUser(email="ada@example.org", name="Ada", metadata={"id_student": 11391}, id=ada),
            NewUser(email="bo@example.org", name="Bo", metadata={"id_student": 28400}, id=bo)])
        create_courses(session=session, courses=[NewCourse(title="AAA", instructor_id=teacher, id=course,
                                                           metadata={"presentation": "AAA-2014J"})])
        enroll_users(session=session, enrollments=[NewEnrollment(user_id=u, course_id=course) for u in (ada, bo)])
    return settings, course, ada, bo


def test_re_alert_supersedes_the_open_alert(platform):
    from sqlalchemy import select

    from learnloop.errors import InvalidInput
    from platform_api import _alerts
    from platform_api._models import Alert, Enrollment
    from platform_api.api import alert_outcome_labels, latest_alerts, open_session, record_alerts
    from platform_api.data import AlertAction, AlertOutcome, AlertStatus

    settings, course, ada, bo = platform
    start = datetime(2026, 3, 2, tzinfo=UTC)
    with open_session(settings) as session:
        enrollments = {e.user_id: e.id for e in session.scalars(select(Enrollment))}
        first_ada, first_bo = record_alerts(session=session, now=start,
                                            alerts=[_alert(enrollments[ada], 0.8), _alert(enrollments[bo], 0.75)])
        # Staff act on Bo's alert; eight days later (after the 7-day cooldown) the job alerts both again.
        _alerts.record_outcome(session=session, actor=None, alert_id=first_bo, outcome=AlertOutcome.action_taken,
                               action=AlertAction.message_learner, note="")
        second_ada, second_bo = record_alerts(session=session, now=start + timedelta(days=8),
                                              alerts=[_alert(enrollments[ada], 0.9), _alert(enrollments[bo], 0.8)])

        status = {a.id: a.status for a in session.scalars(select(Alert))}
        assert status == {first_ada: AlertStatus.superseded, first_bo: AlertStatus.action_taken,
                          second_ada: AlertStatus.open, second_bo: AlertStatus.open}
        open_per_learner = {}
        for alert in session.scalars(select(Alert).where(Alert.status == AlertStatus.open)):
            open_per_learner[alert.user_id] = open_per_learner.get(alert.user_id, 0) + 1
        assert open_per_learner == {ada: 1, bo: 1}
        old = session.get(Alert, first_ada)
        assert old.resolved_at is not None and old.resolved_by is None
        # The cooldown compares with the newest alert.
        assert latest_alerts(session=session, enrollment_ids=[enrollments[ada]])[enrollments[ada]].alert_id \
            == second_ada

        summary = _alerts.report(session=session, actor=None, course_id=course)
        assert summary["by_status"]["superseded"] == 1 and summary["by_status"]["open"] == 2
        assert summary["resolved"] == 1 and summary["share_acted"] == 1.0
        assert [label.alert_id for label in alert_outcome_labels(session=session)] == [first_bo]
        with pytest.raises(InvalidInput, match="superseded"):
            _alerts.record_outcome(session=session, actor=None, alert_id=first_ada,
                                   outcome=AlertOutcome.dismissed, action=None, note="")
        assert session.get(Alert, first_ada).status is AlertStatus.superseded

        # A third alert supersedes the second; still one open alert for Ada.
        (third_ada,) = record_alerts(session=session, now=start + timedelta(days=16),
                                     alerts=[_alert(enrollments[ada], 0.95)])
        open_ada = session.scalars(select(Alert.id).where(Alert.user_id == ada,
                                                          Alert.status == AlertStatus.open)).all()
        assert open_ada == [third_ada]


def test_linked_oulad_records_finds_imported_users_and_course(platform):
    from platform_api.api import linked_oulad_records, open_session

    settings, course, ada, bo = platform
    with open_session(settings) as session:
        users, found = linked_oulad_records(session=session, id_students=[11391, 28400, 99999],
                                            presentation="AAA-2014J")
        assert users == {11391: ada, 28400: bo} and found == course
        users, found = linked_oulad_records(session=session, id_students=[99999], presentation="BBB-2014J")
        assert users == {} and found is None


def test_grant_course_role_makes_a_user_course_staff(platform):
    from platform_api import policy
    from platform_api._models import Course, User
    from platform_api.api import grant_course_role, open_session

    settings, course, ada, _ = platform
    with open_session(settings) as session:
        principal = policy.load_principal(session, session.get(User, ada))
        assert not policy.is_course_staff(session, principal, session.get(Course, course))
        assert grant_course_role(session=session, user_id=ada, course_id=course) is True
        assert grant_course_role(session=session, user_id=ada, course_id=course) is False  # already held
        principal = policy.load_principal(session, session.get(User, ada))
        assert policy.is_course_staff(session, principal, session.get(Course, course))
