"""platform_api.api: the bulk surface the OULAD import and the grader use (same rules, same events)."""

from __future__ import annotations

import uuid

import pytest

from learnloop.errors import Conflict, InvalidInput
from platform_api import api
from platform_api.data import (
    AssessmentKind,
    EnrollmentStatus,
    NewAssessment,
    NewContent,
    NewCourse,
    NewEnrollment,
    NewSubmission,
    NewUser,
    UserRole,
)


def test_bulk_import_is_visible_through_the_http_api(platform):
    tag = uuid.uuid4().hex[:6]
    with api.open_session(platform.settings, migrate_first=False) as session:
        tutor, *learners = api.create_users(session=session, users=[
            NewUser(email=f"tutor-{tag}@oulad.example", name="Tutor", role=UserRole.instructor),
            *[NewUser(email=f"s{i}-{tag}@oulad.example", name=f"Student {i}", metadata={"id_student": i})
              for i in range(3)]])
        (course_id,) = api.create_courses(session=session, courses=[
            NewCourse(title=f"AAA-2013J-{tag}", instructor_id=tutor, duration_weeks=38,
                      metadata={"code_module": "AAA", "code_presentation": "2013J"})])
        api.enroll_users(session=session, enrollments=[
            NewEnrollment(user_id=learners[0], course_id=course_id),
            NewEnrollment(user_id=learners[1], course_id=course_id, status=EnrollmentStatus.dropped)])
        api.create_content_items(session=session, items=[NewContent(course_id=course_id, title="resource 1")])
        (tma,) = api.create_assessments(session=session, assessments=[
            NewAssessment(course_id=course_id, title="TMA 1", kind=AssessmentKind.assignment, weight=10)])
        (graded,) = api.record_submissions(session=session, submissions=[
            NewSubmission(assessment_id=tma, user_id=learners[0], score=78.0)])
        assert api.enrollment_status_of(session, user_id=learners[1], course_id=course_id) is EnrollmentStatus.dropped
        with pytest.raises(Conflict, match="already exist"):
            api.create_users(session=session, users=[NewUser(email=f"tutor-{tag}@oulad.example", name="again")])
        session.rollback()
        with pytest.raises(InvalidInput):
            api.record_submissions(session=session, submissions=[
                NewSubmission(assessment_id=tma, user_id=learners[0], score=130.0)])
        session.rollback()

    client = platform.client
    course = client.get(f"/api/v1/courses/{course_id}", headers=platform.admin_headers).json()
    assert course["status"] == "published" and course["instructor_id"] == str(tutor)
    submission = client.get(f"/api/v1/submissions/{graded}", headers=platform.admin_headers).json()
    assert submission["status"] == "graded" and submission["score"] == 78.0
    rows = client.get(f"/api/v1/users/{learners[0]}/assessments", headers=platform.admin_headers).json()["data"]
    assert [(r["title"], r["score"]) for r in rows] == [("TMA 1", 78.0)]
    # Imported users have no password: they cannot log in until one is set.
    assert client.post("/api/v1/auth/login", json={"email": f"s0-{tag}@oulad.example", "password": "x" * 8}) \
        .status_code == 401


def test_read_events_replays_the_stream_in_order(platform):
    _, learner = platform.user()
    posted = [platform.client.post("/api/v1/events", headers=learner, json={"event_type": kind}).json()["event_id"]
              for kind in ("page_view", "resource_click", "video_play")]
    with api.open_session(platform.settings, migrate_first=False) as session:
        events = api.read_events(session=session, topic="lms.analytics.events", limit=100_000)
        ours = [(position, e) for position, e in events if str(e.event_id) in posted]
        assert [str(e.event_id) for _, e in ours] == posted
        assert [e.event_type for _, e in ours] == ["page_view", "resource_click", "video_play"]
        after = api.read_events(session=session, topic="lms.analytics.events", after_id=ours[0][0])
        assert str(after[0][1].event_id) == posted[1]
