"""The alerts API: course staff only (a learner sees no alert, not even their own), outcomes stored, audited,
emitted, reported and exported as labels."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from interventions_fixtures import PASSWORD


@pytest.fixture(scope="module")
def api(interventions_world):
    from platform_api.main import create_app

    app = create_app(interventions_world.settings, migrate=False, per_user_per_minute=100_000,
                     per_ip_per_minute=100_000)
    with TestClient(app) as client:
        def login(email: str) -> dict[str, str]:
            response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert response.status_code == 200, response.text
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        client.login = login
        yield client


def test_instructor_lists_the_course_alerts_by_risk(api, interventions_world):
    world = interventions_world
    response = api.get(f"/api/v1/courses/{world.course_a}/alerts", headers=api.login(world.instructor_a))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 2
    risks = [a["risk_score"] for a in body["data"]]
    assert risks == sorted(risks, reverse=True)
    top = body["data"][0]
    assert top["learner_name"] == "Learner 2001" and top["status"] == "open"
    assert "3 of 3 assessments missed" in [d["text"] for d in top["drivers"]]
    filtered = api.get(f"/api/v1/courses/{world.course_a}/alerts?status=dismissed",
                       headers=api.login(world.instructor_a))
    assert filtered.status_code == 200 and filtered.json()["count"] == 0


def test_other_course_instructor_and_learners_are_refused(api, interventions_world):
    world = interventions_world
    alert_id = api.get(f"/api/v1/courses/{world.course_a}/alerts",
                       headers=api.login(world.instructor_a)).json()["data"][0]["id"]
    other = api.login(world.instructor_b)
    learner = api.login(world.learner_2001)  # the learner the alert is about
    classmate = api.login("learner2005@example.org")
    for headers in (other, learner, classmate):
        assert api.get(f"/api/v1/courses/{world.course_a}/alerts", headers=headers).status_code == 403
        assert api.get(f"/api/v1/alerts/{alert_id}", headers=headers).status_code == 403
        assert api.get(f"/api/v1/courses/{world.course_a}/alerts/report", headers=headers).status_code == 403
        refused = api.post(f"/api/v1/alerts/{alert_id}/outcome", headers=headers, json={"outcome": "dismissed"})
        assert refused.status_code == 403
    assert api.get("/api/v1/alerts/report", headers=api.login(world.instructor_a)).status_code == 403
    assert api.get(f"/api/v1/courses/{world.course_a}/alerts").status_code == 401
    # ...and nothing was recorded by the refused attempts.
    assert api.get(f"/api/v1/alerts/{alert_id}", headers=api.login(world.instructor_a)).json()["status"] == "open"


def test_outcomes_are_stored_audited_emitted_reported_and_exported(api, interventions_world):
    from sqlalchemy import select

    from learnloop.events import Topic
    from pipelines.interventions.api import export_outcome_labels
    from platform_api._models import AlertOutcomeRecord, AuditLog
    from platform_api.api import open_session, read_events

    world = interventions_world
    headers = api.login(world.instructor_a)
    first, second = api.get(f"/api/v1/courses/{world.course_a}/alerts", headers=headers).json()["data"]
    missing_action = api.post(f"/api/v1/alerts/{first['id']}/outcome", headers=headers,
                              json={"outcome": "action_taken"})
    assert missing_action.status_code == 422 and "action" in missing_action.json()["error"]["message"]
    assert api.post(f"/api/v1/alerts/{first['id']}/outcome", headers=headers,
                    json={"outcome": "sideways"}).status_code == 422
    acted = api.post(f"/api/v1/alerts/{first['id']}/outcome", headers=headers,
                     json={"outcome": "action_taken", "action": "message_learner", "note": "Emailed on Monday"})
    assert acted.status_code == 200, acted.text
    assert acted.json()["status"] == "action_taken" and acted.json()["resolved_at"]
    useless = api.post(f"/api/v1/alerts/{second['id']}/outcome", headers=headers, json={"outcome": "not_useful"})
    assert useless.status_code == 200 and useless.json()["status"] == "not_useful"
    assert api.post("/api/v1/alerts/00000000-0000-4000-8000-000000000000/outcome", headers=headers,
                    json={"outcome": "dismissed"}).status_code == 404

    with open_session(world.settings, migrate_first=False) as session:
        record = session.scalar(select(AlertOutcomeRecord).where(
            AlertOutcomeRecord.alert_id == uuid.UUID(first["id"])))
        assert record.note == "Emailed on Monday" and record.action.value == "message_learner"
        audits = session.scalars(select(AuditLog).where(AuditLog.action == "alert.outcome")).all()
        assert {a.resource_id for a in audits} >= {first["id"], second["id"]}
        events = [e for _, e in read_events(session=session, topic=Topic.enrollments, limit=10_000)
                  if e.event_type == "enrollment.alert_outcome"]
        assert {(e.payload["alert_id"], e.payload["outcome"]) for e in events} >= {
            (first["id"], "action_taken"), (second["id"], "not_useful")}
        assert all("note" not in e.payload for e in events)  # free text stays in the database

    report = api.get(f"/api/v1/courses/{world.course_a}/alerts/report", headers=headers).json()
    assert report["total"] == 2 and report["resolved"] == 2
    assert report["by_status"]["action_taken"] == 1 and report["by_status"]["not_useful"] == 1
    assert report["by_action"]["message_learner"] == 1
    assert report["share_useful"] == 0.5 and report["share_acted"] == 0.5

    labels = export_outcome_labels(settings=world.settings)
    mine = labels[labels["presentation"] == "AAA-2013J"].set_index("id_student")
    assert mine.loc[2001, "outcome"] == "action_taken" and mine.loc[2001, "action"] == "message_learner"
    assert mine.loc[2002, "outcome"] == "not_useful" and not mine.loc[2002, "alert_was_useful"]
    assert mine.loc[2001, "student_course"] == "2001:AAA-2013J"


def test_prometheus_counts_alerts_by_status(api):
    text = api.get("/metrics").text
    counts = {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("risk_alerts{")}
    assert set(counts) == {"open", "action_taken", "dismissed", "not_useful", "superseded"}
    assert sum(counts.values()) >= 3  # the first run raised three
