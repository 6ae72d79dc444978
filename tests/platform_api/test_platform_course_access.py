"""Who may see a course and what is in it, and who may (re-)enroll: GET /courses and /courses/{id} agree, a learner
who dropped out can come back, and course metadata written before input was validated never breaks a request."""

from __future__ import annotations

import uuid

import pytest
from platform_fixtures import PASSWORD, Platform

from learnloop.events import Topic
from platform_api import api, policy
from platform_api._models import Course, User


def _enrollment_events(p: Platform, after: int) -> list:
    with p.app.state.sessions() as session:
        return [event for _, event in api.read_events(session=session, topic=Topic.enrollments, after_id=after)]


def _outbox_end(p: Platform) -> int:
    with p.app.state.sessions() as session:
        rows = api.read_events(session=session, topic=Topic.enrollments, limit=1_000_000)
    return rows[-1][0] if rows else 0


def _listed(p: Platform, headers: dict[str, str], instructor_id: str, query: str = "") -> set[str]:
    response = p.client.get(f"/api/v1/courses?instructor_id={instructor_id}&limit=100{query}", headers=headers)
    assert response.status_code == 200, response.text
    return {course["id"] for course in response.json()["data"]}


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


# --------------------------------------------------------------------------- listing agrees with reading
def test_assistants_list_the_courses_they_are_granted(platform):
    p = platform
    instructor_id, instructor = p.user("instructor")
    private = p.course(instructor, visibility="private")
    draft = p.course(instructor, publish=False)
    not_granted = p.course(instructor, publish=False)
    ta_id, ta = p.user()
    for course_id in (private, draft):
        granted = p.client.post(f"/api/v1/users/{ta_id}/roles", headers=instructor, json={
            "role_name": "teaching_assistant", "scope_type": "course", "scope_id": course_id})
        assert granted.status_code == 201, granted.text

    assert _listed(p, ta, instructor_id) == {private, draft}
    assert _listed(p, ta, instructor_id, "&status=draft") == {draft}
    assert all(p.client.get(f"/api/v1/courses/{c}", headers=ta).status_code == 200 for c in (private, draft))
    assert p.client.get(f"/api/v1/courses/{not_granted}", headers=ta).status_code == 404


def test_a_learner_who_dropped_a_private_course_no_longer_lists_it(platform):
    p = platform
    instructor_id, instructor = p.user("instructor")
    private = p.course(instructor, visibility="private")
    learner_id, learner = p.user()
    enrolled = p.client.post(f"/api/v1/courses/{private}/enrollments", headers=instructor,
                             json={"user_id": learner_id})
    assert enrolled.status_code == 201, enrolled.text
    enrollment_id = enrolled.json()["id"]
    assert _listed(p, learner, instructor_id) == {private}

    assert p.client.put(f"/api/v1/enrollments/{enrollment_id}/progress", headers=learner,
                        json={"progress": 5, "status": "dropped"}).status_code == 200

    assert _listed(p, learner, instructor_id) == set()
    assert p.client.get(f"/api/v1/courses/{private}", headers=learner).status_code == 404


def test_learners_keep_an_archived_course_and_lose_it_back_in_draft(platform):
    p = platform
    instructor_id, instructor = p.user("instructor")
    course_id = p.course(instructor)
    item = p.client.post("/api/v1/content", headers=instructor, json={"course_id": course_id, "title": "Week 1"})
    assert item.status_code == 201, item.text
    _, learner = p.user()
    _, outsider = p.user()
    p.enroll(course_id, learner)
    reads = (f"/api/v1/courses/{course_id}", f"/api/v1/courses/{course_id}/content",
             f"/api/v1/content/{item.json()['id']}")

    def move(status: str) -> None:
        response = p.client.put(f"/api/v1/courses/{course_id}", headers=instructor, json={"status": status})
        assert response.status_code == 200, response.text

    move("archived")  # what they took stays readable to them, and the course is gone for everyone else
    assert [p.client.get(path, headers=learner).status_code for path in reads] == [200, 200, 200]
    assert _listed(p, learner, instructor_id) == {course_id}
    assert p.client.get(reads[0], headers=outsider).status_code == 404
    assert _listed(p, outsider, instructor_id) == set()

    move("draft")  # being reworked: hidden from its learners until it is published again
    assert [p.client.get(path, headers=learner).status_code for path in reads] == [404, 403, 403]
    assert _listed(p, learner, instructor_id) == set()
    assert [p.client.get(path, headers=instructor).status_code for path in reads] == [200, 200, 200]


def test_search_covers_the_courses_their_readers_see(platform):
    """Search is restricted to the courses GET /courses/{id} shows: an assistant's draft, a learner's archived
    course, and not a course moved back to draft."""
    from platform_api import _search

    p = platform
    _, instructor = p.user("instructor")
    assisted_draft = p.course(instructor, publish=False)
    archived, redrafted = p.course(instructor), p.course(instructor)
    assistant_id, _ = p.user()
    learner_id, learner = p.user()
    granted = p.client.post(f"/api/v1/users/{assistant_id}/roles", headers=instructor, json={
        "role_name": "teaching_assistant", "scope_type": "course", "scope_id": assisted_draft})
    assert granted.status_code == 201, granted.text
    for course_id, moves in ((archived, ["archived"]), (redrafted, ["archived", "draft"])):
        p.enroll(course_id, learner)
        for status in moves:
            assert p.client.put(f"/api/v1/courses/{course_id}", headers=instructor,
                                json={"status": status}).status_code == 200

    with p.app.state.sessions() as session:
        def searchable(user_id: str) -> set[str]:
            actor = policy.load_principal(session, session.get(User, uuid.UUID(user_id)))
            return {str(c) for c in _search.visible_course_ids(session=session, actor=actor)}

        assert assisted_draft in searchable(assistant_id)
        assert archived in searchable(learner_id) and redrafted not in searchable(learner_id)


def test_permissions_in_a_course_the_caller_may_not_see_are_not_found(platform):
    p = platform
    _, instructor = p.user("instructor")
    hidden = p.course(instructor, visibility="private")
    public = p.course(instructor)
    learner_id, learner = p.user()
    path = f"/api/v1/users/{learner_id}/permissions?course_id="

    refused = p.client.get(path + hidden, headers=learner)

    course = p.client.get(f"/api/v1/courses/{hidden}", headers=learner)
    assert (refused.status_code, refused.json()["error"]["message"]) == (404, course.json()["error"]["message"])
    assert p.client.get(path + public, headers=learner).status_code == 200
    assert p.client.get(path + hidden, headers=p.admin_headers).status_code == 200


# --------------------------------------------------------------------------- malformed stored metadata
@pytest.mark.parametrize(("metadata", "institution", "groups"), [
    ({"group_ids": 5}, None, set()),
    ({"group_ids": "g1"}, None, set()),  # a string is not a list of one-letter groups
    ({"group_ids": {"g1": True}, "institution_id": ["ou"]}, None, set()),
    ({"group_ids": ["g1", 7, True, None, ["g2"], {"g3": 1}, ""], "institution_id": "ou"}, "ou", {"g1", "7"}),
    ({"institution_id": {"name": "ou"}}, None, set()),
    ({"institution_id": True}, None, set()),
    ({"institution_id": ""}, None, set()),
    ({"institution_id": 42}, "42", set()),  # a whole number is an id, spelled as a grant's scope_id
    ([1, 2], None, set()),
    (None, None, set()),
])
def test_a_malformed_metadata_value_counts_as_absent(metadata, institution, groups):
    course = Course(id=uuid.uuid4(), metadata_=metadata)

    scope = policy.Scope.of_course(course)

    assert (scope.institution_id, scope.group_ids) == (institution, frozenset(groups))
    assert policy.institution_of(metadata) == institution


def _store_metadata(p: Platform, model: type, row_id: str, metadata) -> None:
    """Write metadata past the API's validation, as rows stored before it was added may hold."""
    with p.app.state.sessions() as session:
        session.get(model, uuid.UUID(row_id)).metadata_ = metadata
        session.commit()


@pytest.mark.parametrize("metadata", [{"group_ids": 5}, {"group_ids": "g1", "institution_id": ["ou"]},
                                      {"institution_id": {"name": "ou"}, "group_ids": [{"g": 1}]}])
def test_malformed_course_metadata_never_breaks_a_request(platform, metadata):
    p = platform
    instructor_id, instructor = p.user("instructor")
    course_id = p.course(instructor, visibility="institution", metadata={"institution_id": "ou", "group_ids": ["g1"]})
    _store_metadata(p, Course, course_id, metadata)
    assistant_id, assistant = p.user()
    for scope_type, scope_id in (("course", course_id), ("group", "g1"), ("institution", "ou")):
        granted = p.client.post(f"/api/v1/users/{assistant_id}/roles", headers=p.admin_headers, json={
            "role_name": "teaching_assistant", "scope_type": scope_type, "scope_id": scope_id})
        assert granted.status_code == 201, granted.text
    member_id, member = p.user()
    _store_metadata(p, User, member_id, {"institution_id": ["ou"]})

    assert p.client.get(f"/api/v1/courses/{course_id}", headers=instructor).status_code == 200
    assert p.client.put(f"/api/v1/courses/{course_id}", headers=instructor,
                        json={"description": "still editable"}).status_code == 200
    assert p.client.post("/api/v1/content", headers=instructor,
                         json={"course_id": course_id, "title": "Week 1"}).status_code == 201
    assert p.client.get(f"/api/v1/courses/{course_id}", headers=assistant).status_code == 200
    assert _listed(p, assistant, instructor_id) == {course_id}  # through the course grant; the others match nothing
    assert p.client.get(f"/api/v1/courses/{course_id}", headers=member).status_code == 404
    for headers in (assistant, member):
        assert p.client.get("/api/v1/search?q=week", headers=headers).status_code == 200
        assert p.client.get("/api/v1/courses", headers=headers).status_code == 200
    p.client.cookies.clear()
    try:
        email = p.client.get(f"/api/v1/users/{instructor_id}", headers=p.admin_headers).json()["email"]
        signed_in = p.client.post("/staff/login", data={"email": email, "password": PASSWORD},
                                  follow_redirects=False)
        assert signed_in.status_code == 303, signed_in.text
        home = p.client.get("/staff/courses")
        assert home.status_code == 200 and course_id in home.text
    finally:
        p.client.cookies.clear()
