"""GDPR export and erasure; FERPA visibility of grades."""

from __future__ import annotations

import time

from sqlalchemy import select

from learnloop.events import Event
from platform_api import api
from platform_api._models import OutboxEvent


def test_export_then_erase(platform):
    client = platform.client
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor)
    question = client.post("/api/v1/questions", headers=instructor, json={
        "kind": "fill_in_the_blank", "course_id": course_id, "prompt": "?", "accepted": ["yes"]}).json()
    task = client.post("/api/v1/assessments", headers=instructor, json={
        "course_id": course_id, "title": "A", "question_ids": [question["id"]]}).json()
    seen: list[Event] = []
    unsubscribe = api.subscribe(platform.app, "*", seen.append)
    try:
        user_id, learner = platform.user(name="Erin Example")
        email = client.get(f"/api/v1/users/{user_id}", headers=learner).json()["email"]
        platform.enroll(course_id, learner)
        client.post("/api/v1/submissions", headers=learner,
                    json={"assessment_id": task["id"], "answers": {question["id"]: "my private answer"}})
        client.post("/api/v1/events", headers=learner, json={"event_type": "page_view", "course_id": course_id})

        export = client.get(f"/api/v1/users/{user_id}/export", headers=learner)
        assert export.status_code == 200
        data = export.json()
        assert data["user"]["email"] == email and data["user"]["name"] == "Erin Example"
        assert len(data["enrollments"]) == 1 and data["submissions"][0]["answers"] == {question["id"]: "my private answer"}
        assert data["submissions"][0]["grades"][0]["score"] == 0.0
        assert {"user.created", "enrollment.created", "submission.created", "page_view"} <= \
            {e["event_type"] for e in data["events"]}

        erased = client.delete(f"/api/v1/users/{user_id}", headers=platform.admin_headers)
        assert erased.status_code == 204
        after = client.get(f"/api/v1/users/{user_id}", headers=platform.admin_headers).json()
        assert after["email"].endswith("@erased.invalid") and after["name"] == "Erased user"
        assert after["status"] == "inactive" and after["metadata"] == {"erased": True}
        assert client.post("/api/v1/auth/login", json={"email": email, "password": "learner-password-123"}) \
            .status_code == 401
        assert client.get("/api/v1/courses", headers=learner).status_code == 401  # old tokens stop working

        with platform.app.state.sessions() as session:
            rows = session.scalars(select(OutboxEvent).where(OutboxEvent.envelope.is_not(None))).all()
            mentions = [r for r in rows if user_id in str(r.envelope) or email in str(r.envelope)]
            assert mentions == [], "events still name the erased user"
            pseudonymised = [r for r in rows if r.user_id == after["email"].split("@")[0]]
            assert len(pseudonymised) >= 4  # the history stays, under a pseudonym
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e.event_type == "user.erased" for e in seen):
            time.sleep(0.05)
        assert any(e.event_type == "user.erased" and e.user_id.startswith("erased-") for e in seen)
        submission_view = client.get(f"/api/v1/users/{user_id}/export", headers=platform.admin_headers).json()
        assert submission_view["submissions"][0]["answers"] == {"erased": True}
    finally:
        unsubscribe()


def test_learner_cannot_erase_others(platform):
    victim_id, _ = platform.user()
    _, attacker = platform.user()
    response = platform.client.delete(f"/api/v1/users/{victim_id}", headers=attacker)
    assert response.status_code == 403
    assert platform.client.get(f"/api/v1/users/{victim_id}", headers=platform.admin_headers).json()["status"] == "active"


def test_the_learners_export_holds_nothing_learners_are_not_shown(platform):
    """An AI suggestion stays invisible until staff decide, and learners see nothing of at-risk alerts: their own
    data export (also when an admin downloads it for them) leaves out both and the notes staff keep about them."""
    import json
    import uuid

    from platform_api.data import NewAlert

    client = platform.client
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor)
    essay = client.post("/api/v1/questions", headers=instructor, json={
        "kind": "essay", "course_id": course_id, "prompt": "Why?",
        "rubric": {"criteria": [{"name": "argument", "points": 10}]}}).json()
    task = client.post("/api/v1/assessments", headers=instructor, json={
        "course_id": course_id, "title": "Essay", "kind": "assignment", "question_ids": [essay["id"]]}).json()
    user_id, learner = platform.user(name="Lee Learner")
    enrollment_id = platform.enroll(course_id, learner)
    submission = client.post("/api/v1/submissions", headers=learner,
                             json={"assessment_id": task["id"], "answers": {essay["id"]: "Because."}}).json()
    with platform.app.state.sessions() as session:
        api.record_ai_grade(session=session, submission_id=uuid.UUID(submission["id"]), score=7.25,
                            model_name="essay_grader_p1", model_version="3", confidence=0.41)
        (alert_id,) = api.record_alerts(session=session, alerts=[NewAlert(
            enrollment_id=uuid.UUID(enrollment_id), risk_score=0.875, threshold=0.7, model_name="risk",
            model_version="5", drivers=[{"key": "inactivity", "text": "No activity for 3 weeks",
                                         "contribution": 0.4}])])
    noted = client.post(f"/api/v1/alerts/{alert_id}/outcome", headers=instructor,
                        json={"outcome": "action_taken", "action": "message_learner", "note": "staff-only note"})
    assert noted.status_code == 200, noted.text

    hidden = {"grade.suggested", "enrollment.alert_raised", "enrollment.alert_outcome"}
    for headers in (learner, platform.admin_headers):
        export = client.get(f"/api/v1/users/{user_id}/export", headers=headers).json()
        assert {e["event_type"] for e in export["events"]} & hidden == set()
        assert {"submission.created", "enrollment.created"} <= {e["event_type"] for e in export["events"]}
        (own,) = export["submissions"]
        assert own["status"] == "in_review" and own["grades"] == []
        assert _keys(export) & {"risk_score", "drivers", "ai_score", "confidence"} == set()
        text = json.dumps(export)
        for secret in ("ai_suggested", "essay_grader_p1", "inactivity", "staff-only note", str(alert_id)):
            assert secret not in text, secret

    # Staff override the suggestion: the learner gets the final grade, not the AI score it replaced.
    overridden = client.put(f"/api/v1/submissions/{submission['id']}/grade", headers=instructor,
                            json={"score": 6, "feedback": "Argue more."})
    assert overridden.status_code == 200, overridden.text
    export = client.get(f"/api/v1/users/{user_id}/export", headers=learner).json()
    (own,) = export["submissions"]
    assert own["status"] == "graded" and [g["score"] for g in own["grades"]] == [6.0]
    assert "submission.graded" in {e["event_type"] for e in export["events"]}
    assert _keys(export) & {"ai_score", "ai_grade_id", "previous_status"} == set()
    assert "ai_suggested" not in json.dumps(export)


def _keys(value) -> set[str]:
    """Every key of every JSON object inside ``value``."""
    if isinstance(value, dict):
        return set(value).union(*(_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value))
    return set()


def test_learners_read_in_review_until_staff_decide_and_staff_read_the_real_status(platform):
    """A learner's own submission, their assessments list and their export said `ai_suggested` once the AI had
    suggested a grade: they learnt a suggestion existed before staff decided. Learners now read `in_review` while
    the essay waits (for the AI or for staff); staff keep reading the real status."""
    import json
    import uuid

    client = platform.client
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor)
    essay = client.post("/api/v1/questions", headers=instructor, json={
        "kind": "essay", "course_id": course_id, "prompt": "Why?",
        "rubric": {"criteria": [{"name": "argument", "points": 10}]}}).json()
    task = client.post("/api/v1/assessments", headers=instructor, json={
        "course_id": course_id, "title": "Essay", "kind": "assignment", "question_ids": [essay["id"]]}).json()
    user_id, learner = platform.user(name="Rae Reader")
    platform.enroll(course_id, learner)
    created = client.post("/api/v1/submissions", headers=learner,
                          json={"assessment_id": task["id"], "answers": {essay["id"]: "Because it matters."}})
    assert created.status_code == 201 and created.json()["status"] == "in_review"
    submission_id = created.json()["id"]

    def statuses(headers) -> tuple[str, str]:
        own = client.get(f"/api/v1/submissions/{submission_id}", headers=headers).json()["status"]
        rows = client.get(f"/api/v1/users/{user_id}/assessments", headers=headers).json()["data"]
        return own, next(row["status"] for row in rows if row["assessment_id"] == task["id"])

    for stored in ("queued_for_ai_grading", "ai_suggested"):
        if stored == "ai_suggested":
            with platform.app.state.sessions() as session:
                api.record_ai_grade(session=session, submission_id=uuid.UUID(submission_id), score=7.0,
                                    model_name="essay_grader_p1", model_version="3", confidence=0.6)
        assert statuses(learner) == ("in_review", "in_review"), stored
        assert statuses(instructor) == (stored, stored)
        for headers in (learner, platform.admin_headers):  # the export is the learner's view, whoever downloads it
            export = client.get(f"/api/v1/users/{user_id}/export", headers=headers).json()
            assert [s["status"] for s in export["submissions"]] == ["in_review"]
            created_event = next(e for e in export["events"] if e["event_type"] == "submission.created")
            assert created_event["payload"]["status"] == "in_review"
            assert "ai_suggested" not in json.dumps(export) and "queued_for_ai_grading" not in json.dumps(export)

    decided = client.post(f"/api/v1/submissions/{submission_id}/ai-grade/accept", headers=instructor, json={})
    assert decided.status_code == 200, decided.text
    assert statuses(learner) == ("graded", "graded") == statuses(instructor)

    # The OpenAPI says so: the status enum has the learner-facing value, and the fields document it.
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    ref = schemas["SubmissionPublic"]["properties"]["status"]["$ref"].rsplit("/", 1)[-1]
    assert set(schemas[ref]["enum"]) == {"graded", "queued_for_ai_grading", "ai_suggested", "in_review"}
    assert "in_review" in schemas[ref]["description"]
    assert "in_review" in schemas["SubmissionPublic"]["properties"]["status"]["description"]
    nullable = schemas["UserAssessmentPublic"]["properties"]["status"]
    assert {"$ref": f"#/components/schemas/{ref}"} in nullable["anyOf"] and "in_review" in nullable["description"]
