"""Table-driven permission matrix: who may do what, where (RBAC scoped by user_roles + relationships)."""

from __future__ import annotations

import pytest

from platform_api.policy import ROLE_PERMISSIONS, Permission


@pytest.fixture(scope="module")
def world(platform):
    """Course A (instructor A, TA, learners S and T) and course B (instructor B); an outsider; a creator."""
    client = platform.client
    actors: dict[str, dict[str, str]] = {"admin": platform.admin_headers, "anonymous": {}}
    ids: dict[str, str] = {}
    for name, role in [("instructor_a", "instructor"), ("instructor_b", "instructor"), ("student_s", "student"),
                       ("student_t", "student"), ("outsider", "student"), ("ta", "student"), ("creator", "creator")]:
        ids[name], actors[name] = platform.user(role)
    ids["course_a"] = platform.course(actors["instructor_a"])
    ids["course_b"] = platform.course(actors["instructor_b"])
    for learner in ("student_s", "student_t"):
        platform.enroll(ids["course_a"], actors[learner])
    granted = client.post(f"/api/v1/users/{ids['ta']}/roles", headers=actors["instructor_a"],
                          json={"role_name": "teaching_assistant", "scope_type": "course", "scope_id": ids["course_a"]})
    assert granted.status_code == 201, granted.text
    ids["content_a"] = client.post("/api/v1/content", headers=actors["instructor_a"],
                                   json={"course_id": ids["course_a"], "title": "Week 1"}).json()["id"]
    question = client.post("/api/v1/questions", headers=actors["instructor_a"], json={
        "kind": "fill_in_the_blank", "course_id": ids["course_a"], "prompt": "2+2=", "accepted": ["4"]}).json()
    ids["question_a"] = question["id"]
    ids["assessment_a"] = client.post("/api/v1/assessments", headers=actors["instructor_a"], json={
        "course_id": ids["course_a"], "title": "Q", "question_ids": [question["id"]]}).json()["id"]
    ids["submission_s"] = client.post("/api/v1/submissions", headers=actors["student_s"], json={
        "assessment_id": ids["assessment_a"], "answers": {question["id"]: "4"}}).json()["id"]
    return actors, ids


GRADE = {"score": 1, "feedback": "ok"}
MATRIX = [
    # (actor, method, path, body, expected status)
    ("anonymous", "GET", "/courses/{course_a}", None, 401),
    ("student_s", "GET", "/courses/{course_a}", None, 200),
    ("outsider", "GET", "/courses/{course_a}", None, 200),  # published + public
    # courses
    ("student_s", "POST", "/courses", {"title": "Mine"}, 403),
    ("instructor_a", "POST", "/courses", {"title": "Another"}, 201),
    ("creator", "POST", "/courses", {"title": "Made"}, 201),
    ("instructor_b", "PUT", "/courses/{course_a}", {"description": "hijack"}, 403),
    ("ta", "PUT", "/courses/{course_a}", {"description": "ta edit"}, 403),
    ("instructor_a", "PUT", "/courses/{course_a}", {"description": "mine"}, 200),
    ("admin", "PUT", "/courses/{course_a}", {"description": "admin"}, 200),
    ("student_s", "GET", "/courses/{course_a}/enrollments", None, 403),
    ("instructor_b", "GET", "/courses/{course_a}/enrollments", None, 403),
    ("ta", "GET", "/courses/{course_a}/enrollments", None, 200),
    ("instructor_a", "GET", "/courses/{course_a}/enrollments", None, 200),
    # content
    ("student_s", "POST", "/content", {"course_id": "{course_a}", "title": "x"}, 403),
    ("ta", "POST", "/content", {"course_id": "{course_a}", "title": "x"}, 403),
    ("instructor_b", "POST", "/content", {"course_id": "{course_a}", "title": "x"}, 403),
    ("instructor_a", "POST", "/content", {"course_id": "{course_a}", "title": "x"}, 201),
    ("outsider", "GET", "/courses/{course_a}/content", None, 403),
    ("student_s", "GET", "/courses/{course_a}/content", None, 200),
    ("ta", "GET", "/courses/{course_a}/content", None, 200),
    ("student_s", "DELETE", "/content/{content_a}", None, 403),
    ("ta", "DELETE", "/content/{content_a}", None, 403),
    ("instructor_b", "DELETE", "/content/{content_a}", None, 403),
    # the course plan: staff see it (assistants read-only), learners and other courses' staff do not
    ("anonymous", "GET", "/courses/{course_a}/plan", None, 401),
    ("student_s", "GET", "/courses/{course_a}/plan", None, 403),
    ("instructor_b", "GET", "/courses/{course_a}/plan", None, 403),
    ("ta", "GET", "/courses/{course_a}/plan", None, 200),
    ("instructor_a", "GET", "/courses/{course_a}/plan", None, 200),
    ("ta", "PUT", "/courses/{course_a}/plan", {"items": [{"content_id": "{content_a}", "planned_week": 1}]}, 403),
    ("student_s", "PUT", "/courses/{course_a}/plan", {"items": [{"content_id": "{content_a}", "planned_week": 1}]},
     403),
    ("instructor_a", "PUT", "/courses/{course_a}/plan", {"items": [{"content_id": "{content_a}", "planned_week": 2}]},
     200),
    # questions and assessments
    ("student_s", "POST", "/questions",
     {"kind": "fill_in_the_blank", "course_id": "{course_a}", "prompt": "p", "accepted": ["a"]}, 403),
    ("instructor_b", "POST", "/assessments", {"course_id": "{course_a}", "title": "t"}, 403),
    ("student_s", "GET", "/assessments/{assessment_a}", None, 200),
    ("outsider", "GET", "/assessments/{assessment_a}", None, 403),
    ("outsider", "POST", "/submissions", {"assessment_id": "{assessment_a}", "answers": {}}, 403),
    # submissions and grades (FERPA)
    ("student_s", "GET", "/submissions/{submission_s}", None, 200),
    ("student_t", "GET", "/submissions/{submission_s}", None, 403),
    ("instructor_b", "GET", "/submissions/{submission_s}", None, 403),
    ("ta", "GET", "/submissions/{submission_s}", None, 200),
    ("instructor_a", "GET", "/submissions/{submission_s}", None, 200),
    ("student_s", "PUT", "/submissions/{submission_s}/grade", GRADE, 403),
    ("instructor_b", "PUT", "/submissions/{submission_s}/grade", GRADE, 403),
    ("ta", "PUT", "/submissions/{submission_s}/grade", GRADE, 200),
    ("instructor_a", "PUT", "/submissions/{submission_s}/grade", GRADE, 200),
    # users
    ("student_s", "GET", "/users", None, 403),
    ("instructor_a", "GET", "/users", None, 403),
    ("admin", "GET", "/users", None, 200),
    ("student_s", "GET", "/users/{student_s}", None, 200),
    ("student_s", "GET", "/users/{student_t}", None, 403),
    ("instructor_a", "GET", "/users/{student_s}", None, 200),
    ("instructor_b", "GET", "/users/{student_s}", None, 403),
    ("student_s", "PUT", "/users/{student_t}", {"name": "Mallory"}, 403),
    ("student_s", "PUT", "/users/{student_s}", {"status": "active"}, 403),
    ("student_s", "PUT", "/users/{student_s}", {"name": "Sam"}, 200),
    ("instructor_b", "GET", "/users/{student_s}/enrollments", None, 403),
    ("instructor_a", "GET", "/users/{student_s}/enrollments", None, 200),
    ("student_t", "GET", "/users/{student_s}/assessments", None, 403),
    ("instructor_a", "GET", "/users/{student_s}/assessments", None, 200),
    ("student_s", "GET", "/users/{student_t}/export", None, 403),
    ("student_s", "GET", "/users/{student_s}/export", None, 200),
    # roles
    ("student_s", "POST", "/users/{student_s}/roles", {"role_name": "admin"}, 403),
    ("instructor_a", "POST", "/users/{student_t}/roles", {"role_name": "admin"}, 403),
    ("instructor_b", "POST", "/users/{student_t}/roles",
     {"role_name": "teaching_assistant", "scope_type": "course", "scope_id": "{course_a}"}, 403),
    ("instructor_a", "POST", "/users/{outsider}/roles",
     {"role_name": "admin", "scope_type": "course", "scope_id": "{course_a}"}, 403),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(("actor", "method", "path", "body", "expected"), MATRIX,
                         ids=[f"{a}-{m}-{p}-{e}" for a, m, p, _, e in MATRIX])
def test_permission_matrix(platform, world, actor, method, path, body, expected):
    actors, ids = world
    response = platform.client.request(method, "/api/v1" + _fill(path, ids), headers=actors[actor],
                                       json=_fill(body, ids) if body is not None else None)
    assert response.status_code == expected, response.text
    if expected in (401, 403):
        assert response.json()["error"]["message"]  # says what is missing


def test_scoped_permissions_endpoint(platform, world):
    actors, ids = world
    client = platform.client

    def perms(user: str, course: str | None) -> set[str]:
        query = f"?course_id={ids[course]}" if course else ""
        response = client.get(f"/api/v1/users/{ids[user]}/permissions{query}", headers=platform.admin_headers)
        assert response.status_code == 200, response.text
        return set(response.json()["permissions"])

    assert Permission.submissions_grade.value in perms("ta", "course_a")
    assert Permission.submissions_grade.value not in perms("ta", "course_b")
    assert Permission.submissions_grade.value not in perms("ta", None)
    assert Permission.submissions_grade.value in perms("instructor_a", "course_a")
    assert Permission.submissions_grade.value not in perms("instructor_a", "course_b")
    assert Permission.submissions_create.value in perms("student_s", "course_a")
    assert Permission.content_read.value not in perms("student_s", "course_b")
    roles = client.get(f"/api/v1/users/{ids['ta']}/permissions", headers=platform.admin_headers).json()["roles"]
    assert roles == ["student", f"teaching_assistant@course:{ids['course_a']}"]


def test_roster_lists_the_course_learners(platform, world):
    actors, ids = world
    roster = platform.client.get(f"/api/v1/courses/{ids['course_a']}/enrollments?status=enrolled",
                                 headers=actors["instructor_a"]).json()
    assert roster["count"] == 2 and {e["user_id"] for e in roster["data"]} == {ids["student_s"], ids["student_t"]}


def test_role_table_is_consistent():
    # Learners never hold staff powers through their role; admins hold everything.
    assert Permission.submissions_grade not in ROLE_PERMISSIONS["student"]
    assert ROLE_PERMISSIONS["admin"] == frozenset(Permission)
    assert ROLE_PERMISSIONS["teaching_assistant"] < ROLE_PERMISSIONS["instructor"]


def test_access_token_claims(platform, world):
    import jwt

    actors, ids = world
    token = actors["student_s"]["Authorization"].split()[1]
    claims = jwt.decode(token, platform.settings.secret_key.get_secret_value(), algorithms=["HS256"])
    assert claims["user_id"] == ids["student_s"] and claims["roles"] == ["student"]
    assert "enrollments:create" in claims["permissions"] and "users:list" not in claims["permissions"]
    assert "submissions:create" not in claims["permissions"]  # only inside courses one is enrolled in
    assert claims["exp"] > claims["iat"]
