"""Who may see a course and what is in it, and who may (re-)enroll: GET /courses and /courses/{id} agree, a learner
who dropped out can come back, and course metadata written before input was validated never breaks a request."""

from __future__ import annotations

from platform_fixtures import Platform

from learnloop.events import Topic
from platform_api import api


def _enrollment_events(p: Platform, after: int) -> list:
    with p.app.state.sessions() as session:
        return [event for _, event in api.read_events(session=session, topic=Topic.enrollments, after_id=after)]


def _outbox_end(p: Platform) -> int:
    with p.app.state.sessions() as session:
        rows = api.read_events(session=session, topic=Topic.enrollments, limit=1_000_000)
    return rows[-1][0] if rows else 0


# --------------------------------------------------------------------------- re-enrolling after dropping out
def test_a_dropped_learner_re_enrolls_and_keeps_their_progress(platform):
    p = platform
    _, instructor = p.user("instructor")
    course_id = p.course(instructor)
    learner_id, learner = p.user()
    enrollment_id = p.enroll(course_id, learner)
    progress = f"/api/v1/enrollments/{enrollment_id}/progress"
    assert p.client.put(progress, headers=learner, json={"progress": 40}).status_code == 200
    assert p.client.put(progress, headers=learner, json={"progress": 10, "status": "dropped"}).status_code == 200
    refused = p.client.put(progress, headers=learner, json={"progress": 20})
    assert refused.status_code == 409 and f"/api/v1/courses/{course_id}/enrollments" in refused.json()["error"]["message"]
    before = _outbox_end(p)

    again = p.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=learner)

    assert again.status_code == 201, again.text
    body = again.json()
    assert (body["id"], body["status"], body["progress"]) == (enrollment_id, "enrolled", 10)
    events = _enrollment_events(p, before)
    assert [(e.event_type, e.user_id, e.course_id) for e in events] == [("enrollment.created", learner_id, course_id)]
    assert events[0].payload == {"enrollment_id": enrollment_id, "by": "self", "reenrolled": True, "progress": 10}
    assert p.client.put(progress, headers=learner, json={"progress": 50}).json()["progress"] == 50
    assert p.client.get(f"/api/v1/courses/{course_id}/content", headers=learner).status_code == 200
    twice = p.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=learner)
    assert twice.status_code == 409 and "already enrolled" in twice.json()["error"]["message"]


def test_staff_re_enroll_a_dropped_learner_of_a_closed_course(platform):
    p = platform
    instructor_id, instructor = p.user("instructor")
    course_id = p.course(instructor, enrollment_type="closed")
    learner_id, learner = p.user()
    enrolled = p.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=instructor,
                             json={"user_id": learner_id})
    assert enrolled.status_code == 201, enrolled.text
    enrollment_id = enrolled.json()["id"]
    assert p.client.put(f"/api/v1/enrollments/{enrollment_id}/progress", headers=learner,
                        json={"progress": 30, "status": "dropped"}).status_code == 200

    # The course is closed to self-enrollment, so only its staff bring the learner back.
    themself = p.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=learner)
    assert themself.status_code == 409 and "instructor" in themself.json()["error"]["message"]
    before = _outbox_end(p)
    by_staff = p.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=instructor,
                             json={"user_id": learner_id})

    assert by_staff.status_code == 201, by_staff.text
    assert (by_staff.json()["id"], by_staff.json()["status"], by_staff.json()["progress"]) == (
        enrollment_id, "enrolled", 30)
    assert [e.payload["by"] for e in _enrollment_events(p, before)] == [instructor_id]
