"""Every bad request is a 4xx with a JSON body that says what to fix — never a 500."""

from __future__ import annotations

import json
import uuid

import pytest


@pytest.fixture(scope="module")
def setup(platform):
    instructor_id, instructor = platform.user("instructor")
    student_id, student = platform.user()
    course_id = platform.course(instructor)
    enrollment_id = platform.enroll(course_id, student)
    return {"instructor": instructor, "student": student, "course_id": course_id, "enrollment_id": enrollment_id,
            "student_id": student_id}


def _error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    message = body["error"]["message"]
    for word in words:
        assert word.lower() in message.lower(), message
    assert body["request_id"]
    return body


def test_duplicate_email(platform):
    body = {"email": f"dup-{uuid.uuid4().hex[:6]}@example.org", "name": "D", "password": "password-123"}
    assert platform.client.post("/api/v1/users", headers=platform.admin_headers, json=body).status_code == 201
    again = platform.client.post("/api/v1/users", headers=platform.admin_headers, json={**body, "email": body["email"].upper()})
    _error(again, 409, "already exists")


def test_progress_out_of_range(platform, setup):
    response = platform.client.put(f"/api/v1/enrollments/{setup['enrollment_id']}/progress",
                                   headers=setup["student"], json={"progress": 120})
    body = _error(response, 422, "progress")
    assert body["error"]["details"][0]["loc"] == ["body", "progress"]


@pytest.mark.parametrize(("status", "expected"), [("archived", "archived"), ("draft", "published")])
def test_enrolling_in_unavailable_course(platform, setup, status, expected):
    course_id = platform.course(setup["instructor"], publish=status != "draft")
    if status == "archived":
        assert platform.client.put(f"/api/v1/courses/{course_id}", headers=setup["instructor"],
                                   json={"status": "archived"}).status_code == 200
    response = platform.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=platform.admin_headers)
    _error(response, 409, expected)


def test_enrolling_in_closed_course(platform, setup):
    course_id = platform.course(setup["instructor"], enrollment_type="closed")
    _error(platform.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=setup["student"]), 409,
           "closed", "instructor")
    # ... while the instructor may still enroll them.
    enrolled = platform.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=setup["instructor"],
                                    json={"user_id": setup["student_id"]})
    assert enrolled.status_code == 201


def test_double_enrollment_and_bad_transition(platform, setup):
    _error(platform.client.post(f"/api/v1/courses/{setup['course_id']}/enrollments", headers=setup["student"]),
           409, "already enrolled")
    _error(platform.client.put(f"/api/v1/courses/{setup['course_id']}", headers=setup["instructor"],
                               json={"status": "draft"}), 409, "published", "archived")


def test_grading_outside_scope_and_over_maximum(platform, setup):
    client = platform.client
    question = client.post("/api/v1/questions", headers=setup["instructor"], json={
        "kind": "multiple_choice", "course_id": setup["course_id"], "prompt": "?", "options": ["a", "b"],
        "correct": [0]}).json()
    task = client.post("/api/v1/assessments", headers=setup["instructor"], json={
        "course_id": setup["course_id"], "title": "T", "question_ids": [question["id"]], "max_attempts": 1}).json()
    submission = client.post("/api/v1/submissions", headers=setup["student"], json={
        "assessment_id": task["id"], "answers": {question["id"]: 0}})
    assert submission.json()["score"] == 1
    _error(client.post("/api/v1/submissions", headers=setup["student"], json={
        "assessment_id": task["id"], "answers": {question["id"]: 0}}), 409, "attempts")
    _, other = platform.user("instructor")
    _error(client.put(f"/api/v1/submissions/{submission.json()['id']}/grade", headers=other, json={"score": 1}),
           403, "submissions:grade")
    _error(client.put(f"/api/v1/submissions/{submission.json()['id']}/grade", headers=setup["instructor"],
                      json={"score": 5}), 422, "exceeds")
    _error(client.put(f"/api/v1/submissions/{submission.json()['id']}/grade", headers=setup["instructor"],
                      json={"feedback": "no score"}), 422, "accept_ai")


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("GET", "/courses/not-a-uuid", None, 422, ["course_id"]),
    ("GET", f"/courses/{uuid.uuid4()}", None, 404, ["does not exist"]),
    ("GET", f"/users/{uuid.uuid4()}/assessments", None, 404, ["does not exist"]),
    ("GET", f"/users/{uuid.uuid4()}/enrollments", None, 404, ["does not exist"]),
    ("GET", "/courses?limit=0", None, 422, ["limit"]),
    ("GET", "/courses?limit=100000", None, 422, ["limit"]),
    ("POST", "/courses", {"title": ""}, 422, ["title"]),
    ("POST", "/courses", {"title": "x" * 501}, 422, ["title"]),
    ("POST", "/courses", {"title": "ok", "credit_hours": 123.45}, 422, ["credit_hours"]),
    ("POST", "/courses", {"title": "ok", "surprise": 1}, 422, ["surprise"]),
    ("POST", "/courses", {"title": "nul\u0000byte"}, 422, ["NUL"]),
    ("POST", "/users", {"email": "not-an-email", "name": "x", "password": "password-123"}, 422, ["email"]),
    ("POST", "/users", {"email": "a@b.org", "name": "x", "password": "short"}, 422, ["password"]),
    ("POST", "/questions", {"kind": "multiple_choice", "course_id": str(uuid.uuid4()), "prompt": "p",
                            "options": ["a", "b"], "correct": [5]}, 422, ["correct"]),
    ("POST", "/questions", {"kind": "poetry", "course_id": str(uuid.uuid4()), "prompt": "p"}, 422, ["kind"]),
    ("POST", "/assessments", {"course_id": str(uuid.uuid4()), "title": "t", "due_at": "2026-01-01T00:00:00"},
     422, ["timezone"]),
    ("POST", "/events", {"event_type": "teleport"}, 422, ["event_type"]),
    ("POST", "/events", {"event_type": "page_view", "payload": {"x": float("inf")}}, 422, []),
    ("PUT", "/enrollments/{enrollment_id}/progress", {"progress": "NaN"}, 422, ["progress"]),
    ("POST", "/users/{student_id}/roles", {"role_name": "overlord"}, 422, ["role_name"]),
    ("POST", "/users/{student_id}/roles", {"role_name": "student", "scope_type": "course"}, 422, ["scope_id"]),
    ("GET", "/nowhere", None, 404, ["endpoint"]),
])
def test_invalid_requests(platform, setup, method, path, body, status, words):
    kwargs = {}
    if body is not None:
        # inf/NaN are not JSON; send them raw the way a sloppy client would.
        kwargs["content"] = json.dumps(body).encode()
        kwargs["headers"] = {**platform.admin_headers, "content-type": "application/json"}
    else:
        kwargs["headers"] = platform.admin_headers
    response = platform.client.request(method, "/api/v1" + path.format(**setup), **kwargs)
    _error(response, status, *words)


def test_lone_surrogates_are_refused(platform):
    body = b'{"title": "bad \\ud800 text"}'
    response = platform.client.post("/api/v1/courses", content=body,
                                    headers={**platform.admin_headers, "content-type": "application/json"})
    _error(response, 422, "unicode")


def test_malformed_json_and_bad_tokens(platform):
    client = platform.client
    _error(client.post("/api/v1/courses", headers={**platform.admin_headers, "content-type": "application/json"},
                       content=b"{not json"), 422, "invalid")
    for header in ({"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}, {}):
        response = client.get("/api/v1/courses", headers=header)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": platform.admin_headers["Authorization"][7:]})
    _error(refresh, 401, "refresh")  # an access token is not a refresh token
    _error(client.post("/api/v1/auth/login", json={"email": "nobody@example.org", "password": "x"}), 401, "wrong")


def test_refresh_token_roundtrip(platform):
    email = f"r-{uuid.uuid4().hex[:6]}@example.org"
    platform.client.post("/api/v1/users", headers=platform.admin_headers,
                         json={"email": email, "name": "R", "password": "password-123"})
    pair = platform.client.post("/api/v1/auth/login", json={"email": email, "password": "password-123"}).json()
    renewed = platform.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200 and renewed.json()["access_token"] != pair["access_token"]
    me = platform.client.get(f"/api/v1/users/{pair['user_id']}",
                             headers={"Authorization": f"Bearer {renewed.json()['access_token']}"})
    assert me.json()["email"] == email


def test_suspended_user_is_locked_out(platform):
    user_id, headers = platform.user()
    assert platform.client.put(f"/api/v1/users/{user_id}", headers=platform.admin_headers,
                               json={"status": "suspended"}).json()["status"] == "suspended"
    _error(platform.client.get("/api/v1/courses", headers=headers), 401, "not active")


def _nested(depth: int) -> str:
    """JSON of a list nested ``depth`` levels (as text: the client's own encoder gives up around 1,000)."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [16, 400, 5000])
def test_deeply_nested_metadata_is_refused_and_nothing_is_stored(platform, setup, depth):
    """Metadata nested 400 deep was committed and then every read of it (the user, the user list, the export, the
    course list) was a 500. Every free-form JSON field refuses nesting beyond 16 levels (the object itself is the
    first), before anything is stored."""
    client, deep = platform.client, f'{{"x": {_nested(depth)}}}'
    course_title = f"deep-{uuid.uuid4().hex[:8]}"
    requests = [
        ("PUT", f"/users/{setup['student_id']}", setup["student"], f'{{"metadata": {deep}}}'),
        ("POST", "/courses", setup["instructor"], f'{{"title": "{course_title}", "metadata": {deep}}}'),
        ("POST", "/assessments", setup["instructor"],
         f'{{"course_id": "{setup["course_id"]}", "title": "t", "metadata": {deep}}}'),
        ("POST", "/events", setup["student"], f'{{"event_type": "page_view", "payload": {deep}}}'),
    ]
    for method, path, headers, body in requests:
        response = client.request(method, "/api/v1" + path, content=body.encode(),
                                  headers={**headers, "content-type": "application/json"})
        if depth > 1000:  # deeper than the JSON parser goes: the body is unreadable, a 400
            _error(response, 400, "parsing the body")
        else:
            _error(response, 422, "16 levels")
    for path in (f"/users/{setup['student_id']}", "/users", f"/users/{setup['student_id']}/export", "/courses"):
        assert client.get("/api/v1" + path, headers=platform.admin_headers).status_code == 200, path
    me = client.get(f"/api/v1/users/{setup['student_id']}", headers=setup["student"]).json()
    assert "x" not in me["metadata"]
    titles = [c["title"] for c in client.get("/api/v1/courses", headers=platform.admin_headers,
                                             params={"limit": 200}).json()["data"]]
    assert course_title not in titles


def test_metadata_within_the_limits_is_kept_and_too_large_metadata_is_refused(platform, setup):
    client = platform.client
    fine = {"x": json.loads(_nested(15)), "note": "é" * 1000}
    response = client.put(f"/api/v1/users/{setup['student_id']}", headers=setup["student"], json={"metadata": fine})
    assert response.status_code == 200 and response.json()["metadata"] == fine
    huge = {"notes": ["x" * 1000] * 70}
    _error(client.put(f"/api/v1/users/{setup['student_id']}", headers=setup["student"], json={"metadata": huge}),
           422, "64 KiB")


def _one_attempt_quiz(platform, setup) -> tuple[str, str]:
    client = platform.client
    question = client.post("/api/v1/questions", headers=setup["instructor"], json={
        "kind": "multiple_choice", "course_id": setup["course_id"], "prompt": "?", "options": ["a", "b"],
        "correct": [0]}).json()
    task = client.post("/api/v1/assessments", headers=setup["instructor"], json={
        "course_id": setup["course_id"], "title": "Once", "question_ids": [question["id"]], "max_attempts": 1})
    assert task.status_code == 201, task.text
    return task.json()["id"], question["id"]


def test_concurrent_submissions_get_one_attempt_and_409s(platform, setup):
    """Eight simultaneous submissions to a one-attempt quiz all counted zero earlier attempts and were all stored as
    attempt 1. The database now holds one row per attempt; the others answer 409, none 500."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    task, question = _one_attempt_quiz(platform, setup)
    learner_id, learner = platform.user()
    platform.enroll(setup["course_id"], learner)
    start = threading.Barrier(8)

    def submit(_):
        start.wait()
        return platform.client.post("/api/v1/submissions", headers=learner,
                                    json={"assessment_id": task, "answers": {question: 0}})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 7, [r.text for r in answers]
    listed = platform.client.get(f"/api/v1/users/{learner_id}/assessments", headers=learner).json()
    assert [row["status"] for row in listed["data"] if row["assessment_id"] == task] == ["graded"]


def test_a_submission_that_loses_the_race_for_its_attempt_is_a_409(platform, setup, monkeypatch):
    """The race made reproducible: the second request counted the attempts before the first committed."""
    from platform_api import _assessments

    task, question = _one_attempt_quiz(platform, setup)
    _, learner = platform.user()
    platform.enroll(setup["course_id"], learner)
    body = {"assessment_id": task, "answers": {question: 1}}
    assert platform.client.post("/api/v1/submissions", headers=learner, json=body).status_code == 201
    counted = _assessments._attempts_so_far
    stale = iter([(0, 0)])
    monkeypatch.setattr(_assessments, "_attempts_so_far", lambda *args: next(stale, None) or counted(*args))
    _error(platform.client.post("/api/v1/submissions", headers=learner, json=body), 409, "attempts")
    unlimited = platform.client.post("/api/v1/assessments", headers=setup["instructor"], json={
        "course_id": setup["course_id"], "title": "Again", "question_ids": [question]}).json()["id"]
    body = {"assessment_id": unlimited, "answers": {question: 1}}
    assert platform.client.post("/api/v1/submissions", headers=learner, json=body).json()["attempt"] == 1
    stale = iter([(0, 0)])  # without a limit the loser of the race simply becomes the next attempt
    second = platform.client.post("/api/v1/submissions", headers=learner, json=body)
    assert second.status_code == 201 and second.json()["attempt"] == 2


def test_imported_submissions_of_one_learner_are_numbered_as_attempts(platform, setup):
    """Imports wrote attempt 1 for every row; with one row per attempt a learner's second one must be attempt 2."""
    from sqlalchemy import select

    from platform_api._models import Submission
    from platform_api.api import import_records, record_submissions
    from platform_api.data import NewSubmission

    task, _ = _one_attempt_quiz(platform, setup)
    learner_id, _ = platform.user()
    learner = uuid.UUID(learner_id)
    with platform.app.state.sessions() as session:
        record_submissions(session=session, submissions=[NewSubmission(assessment_id=uuid.UUID(task),
                                                                       user_id=learner, score=1)] * 2)
        imported = [NewSubmission(assessment_id=uuid.UUID(task), user_id=learner, score=0, id=uuid.uuid4())
                    for _ in range(2)]
        assert import_records(session=session, submissions=imported)["submissions"] == 2
        assert import_records(session=session, submissions=imported)["submissions"] == 0  # re-run adds nothing
        attempts = session.scalars(select(Submission.attempt).where(Submission.user_id == learner)).all()
    assert sorted(attempts) == [1, 2, 3, 4]


def test_an_essay_shorter_than_min_words_is_refused(platform, setup):
    client = platform.client
    question = client.post("/api/v1/questions", headers=setup["instructor"], json={
        "kind": "essay", "course_id": setup["course_id"], "prompt": "Describe the water cycle.", "min_words": 5,
        "rubric": {"criteria": [{"name": "Ideas", "points": 2}]}}).json()
    task = client.post("/api/v1/assessments", headers=setup["instructor"], json={
        "course_id": setup["course_id"], "title": "Essay", "question_ids": [question["id"]], "max_attempts": 1})
    task = task.json()["id"]
    for answers in ({question["id"]: "Evaporation."}, {question["id"]: "one two three\nfour  "}, {}):
        body = _error(client.post("/api/v1/submissions", headers=setup["student"],
                                  json={"assessment_id": task, "answers": answers}),
                      422, "at least 5 words", "Describe the water cycle", question["id"])
        assert body["error"]["details"]["field"] == f"answers.{question['id']}"
    accepted = client.post("/api/v1/submissions", headers=setup["student"], json={
        "assessment_id": task, "answers": {question["id"]: "Water evaporates, condenses, then falls."}})
    assert accepted.status_code == 201 and accepted.json()["attempt"] == 1  # refused ones used no attempt
