"""Account self-service and role grants: what a user may change about themself, when sessions end, and that a
grant is stored once, canonically, so it applies."""

from __future__ import annotations


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
