"""The alerts page (/staff/courses/{id}/alerts) acted on by two staff members: a verdict posted from a page loaded
before a colleague resolved the alert must not replace that verdict; the status filter says which values it takes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

PASSWORD = "alert-page-password-1"
SAME_SITE = {"Origin": "http://testserver"}


@pytest.fixture
def staff_page(settings):
    from sqlalchemy import select

    from platform_api._models import Enrollment
    from platform_api.api import (
        create_courses,
        create_users,
        enroll_users,
        grant_course_role,
        open_session,
        record_alerts,
    )
    from platform_api.data import NewAlert, NewCourse, NewEnrollment, NewUser, UserRole
    from platform_api.main import create_app

    teacher, assistant, learner, other, course = (uuid.uuid4() for _ in range(5))
    with open_session(settings) as session:
        create_users(session=session, users=[
            NewUser(email="teacher@example.org", name="Tess Teacher", role=UserRole.instructor, password=PASSWORD,
                    id=teacher),
            NewUser(email="assistant@example.org", name="Al Assistant", password=PASSWORD, id=assistant),
            NewUser(email="ada@example.org", name="Ada Learner", password=PASSWORD, id=learner),
            NewUser(email="bo@example.org", name="Bo Learner", password=PASSWORD, id=other)])
        create_courses(session=session, courses=[NewCourse(title="AAA", instructor_id=teacher, id=course)])
        grant_course_role(session=session, user_id=assistant, course_id=course, role_name="teaching_assistant")
        enroll_users(session=session, enrollments=[NewEnrollment(user_id=u, course_id=course) for u in (learner, other)])
        enrollments = dict(session.execute(select(Enrollment.user_id, Enrollment.id)).all())
        alerts = record_alerts(session=session, now=datetime(2026, 3, 2, tzinfo=UTC), alerts=[NewAlert(
            enrollment_id=enrollments[user], risk_score=risk, threshold=0.7, model_name="risk", model_version="1",
            drivers=[{"key": "inactivity", "text": "no activity in 20 days", "contribution": 0.2}],
            actions=[{"kind": "message_learner", "label": "Message the learner", "details": {}}])
            for user, risk in ((learner, 0.85), (other, 0.75))])
    app = create_app(settings, migrate=False, per_user_per_minute=100_000, per_ip_per_minute=100_000)
    with TestClient(app, follow_redirects=False) as client:
        yield client, course, alerts  # Ada's (higher risk) first


def _sign_in(client: TestClient, email: str) -> None:
    client.cookies.clear()
    assert client.post("/staff/login", data={"email": email, "password": PASSWORD}).status_code == 303


def _token(client: TestClient, email: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_verdict_from_a_page_loaded_before_a_colleague_resolved_the_alert_is_refused(staff_page):
    """The teacher records that they messaged the learner; the assistant, on the page loaded earlier, presses
    "Dismiss": the alert used to read "dismissed" and the teacher's action was gone from the report."""
    client, course, (alert, _) = staff_page
    _sign_in(client, "assistant@example.org")
    page = client.get(f"/staff/courses/{course}/alerts")
    assert page.status_code == 200 and f'/staff/alerts/{alert}/outcome' in page.text
    teacher = _token(client, "teacher@example.org")
    acted = client.post(f"/api/v1/alerts/{alert}/outcome", headers=teacher,
                        json={"outcome": "action_taken", "action": "message_learner", "note": "Called her"})
    assert acted.status_code == 200, acted.text

    stale = client.post(f"/staff/alerts/{alert}/outcome", data={"outcome": "dismissed"}, headers=SAME_SITE)

    assert stale.status_code == 409 and stale.headers["content-type"].startswith("text/html")
    assert "already marked action taken by Tess Teacher" in stale.text and "not saved" in stale.text
    assert client.get(f"/api/v1/alerts/{alert}", headers=teacher).json()["status"] == "action_taken"
    report = client.get(f"/api/v1/courses/{course}/alerts/report", headers=teacher).json()
    assert report["by_action"]["message_learner"] == 1 and report["by_status"]["dismissed"] == 0
    # The JSON API may still change a verdict on purpose (the history keeps both).
    changed = client.post(f"/api/v1/alerts/{alert}/outcome", headers=teacher, json={"outcome": "not_useful"})
    assert changed.status_code == 200 and changed.json()["status"] == "not_useful"


def test_an_open_alert_is_resolved_from_the_page(staff_page):
    client, course, (alert, _) = staff_page
    _sign_in(client, "assistant@example.org")
    done = client.post(f"/staff/alerts/{alert}/outcome", headers=SAME_SITE,
                       data={"outcome": "action_taken", "action": "message_learner", "note": "Texted\x00 her"})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=action_taken#status-message")
    assert f'data-alert="{alert}"' not in client.get(f"/staff/courses/{course}/alerts").text


def test_an_unknown_status_filter_names_the_values_the_address_takes(staff_page):
    """The page answered `?status=Open` with "choose one of Open, Action taken, …": the labels, which it refuses."""
    client, course, _ = staff_page
    _sign_in(client, "teacher@example.org")
    refused = client.get(f"/staff/courses/{course}/alerts", params={"status": "Open"})
    assert refused.status_code == 422
    assert "open, action_taken, dismissed, not_useful, superseded or all" in refused.text
    assert client.get(f"/staff/courses/{course}/alerts", params={"status": "action_taken"}).status_code == 200


def test_alerts_after_the_first_page_are_reached_by_its_links(staff_page, monkeypatch):
    """The page showed the first 200 alerts under "250 open alerts" and no way to reach the other 50."""
    from platform_api._routes import alerts as alert_routes

    client, course, (ada, bo) = staff_page
    monkeypatch.setattr(alert_routes, "PAGE_ROWS", 1)
    _sign_in(client, "teacher@example.org")

    first = client.get(f"/staff/courses/{course}/alerts").text
    assert f'data-alert="{ada}"' in first and f'data-alert="{bo}"' not in first
    assert "Alerts 1–1 of 2." in first and 'href="?status=open&amp;offset=1" rel="next">Next 1</a>' in first
    second = client.get(f"/staff/courses/{course}/alerts", params={"status": "open", "offset": 1}).text
    assert f'data-alert="{bo}"' in second and f'data-alert="{ada}"' not in second
    assert "Alerts 2–2 of 2." in second and 'href="?status=open&amp;offset=0" rel="prev"' in second
    assert 'rel="next"' not in second
    assert client.get(f"/staff/courses/{course}/alerts", params={"offset": -1}).status_code == 422
