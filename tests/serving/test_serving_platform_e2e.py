"""End to end: a champion trained, registered and promoted through training.api → the real BentoML service →
the platform's ``GET /api/v1/users/{id}/risk`` (JWT, enrollment, RiskClient over HTTP) → a new version promoted
while learners keep asking: the next answers carry it and none failed. Plus the platform's bad-input answers
against the real service (never a 500, never a NaN)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from serving_fixtures import (
    COURSE,
    STUDENT_FULL,
    STUDENT_NEW,
    STUDENT_OTHER,
    UNKNOWN_STUDENT,
    RunningService,
    ServingWorld,
    register_and_promote,
)

pytestmark = pytest.mark.integration

PASSWORD = "e2e-password-123"


@dataclass
class E2EPlatform:
    client: object  # fastapi TestClient
    admin: dict[str, str]
    course_id: str

    def learner(self, id_student: int | None, *, enroll: bool = True) -> tuple[str, dict[str, str]]:
        email = f"e2e-{uuid.uuid4().hex[:10]}@example.org"
        metadata = {"id_student": id_student} if id_student is not None else {}
        response = self.client.post("/api/v1/users", headers=self.admin, json={
            "email": email, "name": "Learner", "password": PASSWORD, "role": "student", "metadata": metadata})
        assert response.status_code == 201, response.text
        login = self.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        if enroll:
            enrolled = self.client.post(f"/api/v1/courses/{self.course_id}/enrollments", headers=headers)
            assert enrolled.status_code == 201, enrolled.text
        return response.json()["id"], headers

    def risk(self, user_id: str, headers: dict[str, str]):
        return self.client.get(f"/api/v1/users/{user_id}/risk", params={"course_id": self.course_id},
                               headers=headers)


@pytest.fixture(scope="module")
def platform(model_service: RunningService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EPlatform]:
    from fastapi.testclient import TestClient

    from learnloop.settings import Settings
    from platform_api.api import create_admin, open_session
    from platform_api.main import create_app

    root = tmp_path_factory.mktemp("e2e-platform")
    port = int(model_service.url.rsplit(":", 1)[1])
    settings = Settings(data_dir=root / "var", database_url=f"sqlite:///{root / 'platform.db'}", env="test",
                        serving_port=port, serving_timeout_s=5.0, nats_url=None, redis_url=None)
    settings.ensure_dirs()
    email = f"admin-{uuid.uuid4().hex[:8]}@example.org"
    with open_session(settings) as session:
        create_admin(session=session, email=email, name="Admin", password=PASSWORD)
    app = create_app(settings, migrate=False, per_user_per_minute=1_000_000, per_ip_per_minute=1_000_000)
    with TestClient(app) as client:
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        course = client.post("/api/v1/courses", headers=admin, json={"title": "E2E course"})
        course_id = course.json()["id"]
        published = client.put(f"/api/v1/courses/{course_id}", headers=admin,
                               json={"status": "published", "metadata": {"presentation": COURSE}})
        assert published.status_code == 200, published.text
        yield E2EPlatform(client=client, admin=admin, course_id=course_id)


def test_promotion_reaches_the_platform_route_without_a_failed_request(platform: E2EPlatform,
                                                                        serving_world: ServingWorld,
                                                                        model_service: RunningService):
    user_id, headers = platform.learner(STUDENT_FULL)
    first = platform.risk(user_id, headers)
    assert first.status_code == 200, first.text
    before = first.json()
    assert before["status"] == "scored" and before["fallback"] is False and 0.0 <= before["risk_score"] <= 1.0
    outcomes: list[tuple[int, str | None, bool, float | None]] = []
    stop = threading.Event()

    def ask() -> None:  # the only thread using the test client while the main thread trains and promotes
        while not stop.is_set():
            response = platform.risk(user_id, headers)
            body = response.json()
            outcomes.append((response.status_code, body.get("model_version"), body.get("fallback"),
                             body.get("risk_score")))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        new_version = register_and_promote(serving_world.settings, serving_world.feature_names,
                                           seed=int(time.time()) % 1000 + 10)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not any(v == new_version for _, v, _, _ in outcomes[-3:]):
            time.sleep(0.2)
        time.sleep(0.3)
    finally:
        stop.set()
        asker.join(timeout=30)
    assert new_version != before["model_version"]
    failed = [o for o in outcomes if o[0] != 200 or o[2] or o[3] is None or not math.isfinite(o[3])]
    assert not failed, f"{len(failed)} of {len(outcomes)} platform answers failed or fell back: {failed[:3]}"
    versions = [version for _, version, _, _ in outcomes]
    assert versions[-1] == new_version and len(outcomes) >= 5
    switched = versions.index(new_version)
    assert before["model_version"] not in versions[switched:], "an old version came back after the switch"
    # Every answer the platform relayed was produced by the service (its prediction log has the new version).
    info = httpx.post(f"{model_service.url}/admin/models", json={}, timeout=10).json()
    assert info["versions"]["risk"] == new_version


def test_a_new_student_without_activity_gets_a_marked_cold_start_through_the_platform(platform: E2EPlatform):
    user_id, headers = platform.learner(STUDENT_NEW)
    response = platform.risk(user_id, headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cold_start" and body["fallback"] is False
    assert math.isfinite(body["risk_score"]) and 0.0 <= body["risk_score"] <= 1.0
    assert body["reason"] and "features yet" in body["reason"]


@pytest.mark.parametrize(("id_student", "enroll", "status", "message"), [
    (UNKNOWN_STUDENT, True, 404, "model service has no record"),  # unknown to the feature store
    (STUDENT_OTHER, True, 404, "model service has no record"),  # known, but not registered in this presentation
    (STUDENT_FULL, False, 409, "not enrolled"),  # not enrolled in the platform course
    (None, True, 409, "id_student"),  # a platform learner never linked to a model-side id
])
def test_bad_input_through_the_platform_is_a_defined_4xx(platform: E2EPlatform, id_student, enroll, status,
                                                         message):
    user_id, headers = platform.learner(id_student, enroll=enroll)
    response = platform.risk(user_id, platform.admin)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]


def test_recommendations_are_served_by_the_model_service_and_fall_back_to_popularity(
        platform: E2EPlatform, model_service: RunningService):
    from serving_fixtures import free_port

    from platform_api.data import MLBackends
    from serving.api import CircuitBreaker, RecommendClient

    client = platform.client
    items = []
    for n in range(4):
        created = client.post("/api/v1/content", headers=platform.admin,
                               json={"course_id": platform.course_id, "title": f"Unit {n}", "body": f"unit {n}"})
        assert created.status_code == 201, created.text
        items.append(created.json()["id"])
    user_id, headers = platform.learner(STUDENT_FULL)
    opened = client.post("/api/v1/events", headers=headers, json={"event_type": "content_view", "content_id": items[0]})
    assert opened.status_code in (201, 202), opened.text
    app = client.app
    wired = app.state.ml
    live = RecommendClient(base_url=model_service.url, timeout_s=10)
    dead = RecommendClient(base_url=f"http://127.0.0.1:{free_port()}", timeout_s=0.5,
                           breaker=CircuitBreaker(failure_threshold=1))
    try:
        app.state.ml = MLBackends(recommend=live)
        response = client.get(f"/api/v1/users/{user_id}/recommendations", params={"course_id": platform.course_id},
                              headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "X-Learnloop-Fallback" not in response.headers and body["fallback"] is None
        assert body["variant"] in ("control", "treatment") and body["data"]
        assert items[0] not in [item["item_id"] for item in body["data"]]  # never what the learner opened
        app.state.ml = MLBackends(recommend=dead)
        reasons = []
        for _ in range(2):  # the first call fails to connect and opens the breaker; the second is refused by it
            response = client.get(f"/api/v1/users/{user_id}/recommendations",
                                  params={"course_id": platform.course_id}, headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["X-Learnloop-Fallback"] == "recommendations-popularity"
            body = response.json()
            assert body["variant"] is None and body["fallback"].startswith("recommender unavailable: ")
            reasons.append(body["fallback"])
            assert [item["item_id"] for item in body["data"]] == items[1:]
        assert dead.breaker.state.value == "open"
        assert "model service unreachable" in reasons[0] and "circuit open" in reasons[1], reasons
    finally:
        app.state.ml = wired
        live.close()
        dead.close()
