"""Account self-service and role grants: what a user may change about themself, when sessions end, and that a
grant is stored once, canonically, so it applies."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from platform_fixtures import PASSWORD
from sqlalchemy import func, select

from platform_api import _users, _web
from platform_api._models import UserRoleGrant


# --- access-relevant metadata ---------------------------------------------------------------------------
def test_a_learner_cannot_declare_their_own_institution(platform):
    client = platform.client
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor, visibility="institution", metadata={"institution_id": "mit"})
    learner_id, learner = platform.user()

    for key, value in (("institution_id", "mit"), ("id_student", 11391)):
        refused = client.put(f"/api/v1/users/{learner_id}", headers=learner, json={"metadata": {key: value}})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert f"metadata.{key}" in error["message"] and error["details"] == {"field": f"metadata.{key}"}
    assert client.get(f"/api/v1/users/{learner_id}", headers=learner).json()["metadata"] == {}
    # So the institution's course stays out of reach: not readable, not enrollable.
    assert client.get(f"/api/v1/courses/{course_id}", headers=learner).status_code == 404
    assert client.post(f"/api/v1/courses/{course_id}/enrollments", headers=learner).status_code == 404

    # Other metadata stays the learner's own.
    own = client.put(f"/api/v1/users/{learner_id}", headers=learner, json={"metadata": {"theme": "dark"}})
    assert own.status_code == 200 and own.json()["metadata"] == {"theme": "dark"}

    # An administrator decides the institution; the learner's later updates keep it and cannot change it.
    admin = client.put(f"/api/v1/users/{learner_id}", headers=platform.admin_headers,
                       json={"metadata": {"theme": "dark", "institution_id": "mit"}})
    assert admin.status_code == 200
    assert client.get(f"/api/v1/courses/{course_id}", headers=learner).status_code == 200
    kept = client.put(f"/api/v1/users/{learner_id}", headers=learner, json={"metadata": {"theme": "light"}})
    assert kept.status_code == 200 and kept.json()["metadata"] == {"theme": "light", "institution_id": "mit"}
    same = client.put(f"/api/v1/users/{learner_id}", headers=learner,
                      json={"metadata": {"theme": "light", "institution_id": "mit"}})
    assert same.status_code == 200
    moved = client.put(f"/api/v1/users/{learner_id}", headers=learner, json={"metadata": {"institution_id": "ou"}})
    assert moved.status_code == 403 and "institution_id" in moved.json()["error"]["message"]
    assert client.get(f"/api/v1/users/{learner_id}", headers=learner).json()["metadata"]["institution_id"] == "mit"


# --- sessions end with the password ---------------------------------------------------------------------
def _sign_in(platform, role: str = "student") -> tuple[str, dict]:
    """A new user and their token pair (the fixture's ``user`` keeps only the access token)."""
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.org"
    created = platform.client.post("/api/v1/users", headers=platform.admin_headers,
                                   json={"email": email, "name": "Sam Session", "password": PASSWORD, "role": role})
    assert created.status_code == 201, created.text
    pair = platform.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert pair.status_code == 200, pair.text
    return email, pair.json()


def _bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def test_changing_the_password_ends_every_earlier_session(platform):
    client = platform.client
    email, pair = _sign_in(platform)
    user_id = pair["user_id"]
    # a second session of the same account (another device), signed in before the change
    other = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()

    changed = client.put(f"/api/v1/users/{user_id}", headers=_bearer(pair), json={"password": "a-new-passphrase-456"})
    assert changed.status_code == 200, changed.text

    for old in (pair, other):
        denied = client.get(f"/api/v1/users/{user_id}", headers=_bearer(old))
        assert denied.status_code == 401 and "password" in denied.json()["error"]["message"]
        renewed = client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert renewed.status_code == 401 and "password" in renewed.json()["error"]["message"]
    # The signed-in pages read the same token: the cookie session ends too.
    page = client.get("/grading/my-grades", cookies={_web.COOKIE: pair["access_token"]},
                      follow_redirects=False)
    assert page.status_code == 303 and "/staff/login" in page.headers["location"]

    fresh = client.post("/api/v1/auth/login", json={"email": email, "password": "a-new-passphrase-456"}).json()
    assert client.get(f"/api/v1/users/{user_id}", headers=_bearer(fresh)).status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 200


def test_an_admin_password_reset_and_deactivation_end_sessions_too(platform):
    client = platform.client
    _, pair = _sign_in(platform)
    reset = client.put(f"/api/v1/users/{pair['user_id']}", headers=platform.admin_headers,
                       json={"password": "reset-by-admin-789"})
    assert reset.status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401

    email, pair = _sign_in(platform)
    assert client.put(f"/api/v1/users/{pair['user_id']}", headers=platform.admin_headers,
                      json={"status": "suspended"}).status_code == 200
    assert client.get("/api/v1/courses", headers=_bearer(pair)).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    # Reactivated, the account's earlier tokens work again: suspension is not a password change.
    assert client.put(f"/api/v1/users/{pair['user_id']}", headers=platform.admin_headers,
                      json={"status": "active"}).status_code == 200
    assert client.get("/api/v1/courses", headers=_bearer(pair)).status_code == 200

    _, pair = _sign_in(platform)
    assert client.delete(f"/api/v1/users/{pair['user_id']}", headers=platform.admin_headers).status_code == 204
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


# --- role grants ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", [str.upper, lambda c: c.replace("-", ""), lambda c: f"urn:uuid:{c}"],
                         ids=["upper-case", "hex", "urn"])
def test_a_course_grant_applies_whatever_the_uuid_spelling(platform, spelling):
    client = platform.client
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor)
    ta_id, ta = platform.user()
    assert client.get(f"/api/v1/courses/{course_id}/enrollments", headers=ta).status_code == 403

    granted = client.post(f"/api/v1/users/{ta_id}/roles", headers=instructor, json={
        "role_name": "teaching_assistant", "scope_type": "course", "scope_id": spelling(course_id)})
    assert granted.status_code == 201, granted.text
    assert granted.json()["scope_id"] == course_id
    assert client.get(f"/api/v1/courses/{course_id}/enrollments", headers=ta).status_code == 200
    again = client.post(f"/api/v1/users/{ta_id}/roles", headers=instructor, json={
        "role_name": "teaching_assistant", "scope_type": "course", "scope_id": course_id})
    assert again.status_code == 409


def test_a_course_grant_needs_a_course_uuid(platform):
    user_id, _ = platform.user()
    response = platform.client.post(f"/api/v1/users/{user_id}/roles", headers=platform.admin_headers, json={
        "role_name": "teaching_assistant", "scope_type": "course", "scope_id": "not-a-course"})
    assert response.status_code == 422 and response.json()["error"]["details"] == {"field": "scope_id"}


def _grants_of(platform, user_id: str) -> int:
    with platform.app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(UserRoleGrant)
                              .where(UserRoleGrant.user_id == uuid.UUID(user_id)))


def test_a_global_grant_raced_past_the_check_is_refused_by_the_database(platform, monkeypatch):
    user_id, _ = platform.user()
    url = f"/api/v1/users/{user_id}/roles"
    assert platform.client.post(url, headers=platform.admin_headers, json={"role_name": "operator"}).status_code == 201
    # A concurrent identical request saw no grant yet: the insert itself must fail, as a 409.
    monkeypatch.setattr(_users, "_existing_grant", lambda *args, **kwargs: None)
    raced = platform.client.post(url, headers=platform.admin_headers, json={"role_name": "operator"})
    assert raced.status_code == 409, raced.text
    assert _grants_of(platform, user_id) == 1


def test_concurrent_identical_global_grants_make_one_grant(platform):
    user_id, _ = platform.user()

    def grant(_):
        return platform.client.post(f"/api/v1/users/{user_id}/roles", headers=platform.admin_headers,
                                    json={"role_name": "operator"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(grant, range(8)))
    assert statuses == [201] + [409] * 7
    assert _grants_of(platform, user_id) == 1
