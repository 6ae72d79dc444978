"""GET /api/v1/users/{id}/risk: who may see it, refusals, a real HTTP round trip, and the fallback."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from platform_fixtures import PASSWORD, Platform, fresh_database_url, start_platform

from serving.api import CircuitBreaker, RiskClient


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ModelService(BaseHTTPRequestHandler):
    """Answers ``POST /predict_risk`` like the BentoML model service (same bodies and status codes)."""

    scores = {11391: 0.73}
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        student, course = body["student_id"], body["course_id"]
        if student == 77:  # a broken deployment: 200 with a body of the wrong shape
            status, answer = 200, {"unexpected": True}
        elif student in self.scores:
            status, answer = 200, {"student_id": student, "course_id": course, "risk_score": self.scores[student],
                                   "status": "scored", "model_version": "7", "reason": None}
        else:
            status, answer = 404, {"student_id": student, "course_id": course, "status": "refused",
                                   "reason": "unknown_student", "detail": f"student {student} is unknown"}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def serving_port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def ml_platform(tmp_path_factory, serving_port) -> Iterator[Platform]:
    database = fresh_database_url("sqlite", tmp_path_factory.mktemp("db-risk"))
    yield from start_platform(next(database), tmp_path_factory.mktemp("risk-data"),
                              settings_overrides={"serving_port": serving_port, "serving_timeout_s": 1.0})


@pytest.fixture
def model_service(serving_port) -> Iterator[type[_ModelService]]:
    server = ThreadingHTTPServer(("127.0.0.1", serving_port), _ModelService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield _ModelService
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def fresh_breaker(ml_platform):
    # Each test starts with a healthy breaker: a previous test's failures must not leak into the next.
    ml_platform.app.state.risk_client.breaker = CircuitBreaker()


def _learner(platform: Platform, *, id_student: int | None) -> tuple[str, dict[str, str]]:
    email = f"learner-{uuid.uuid4().hex[:10]}@example.org"
    metadata = {"id_student": id_student} if id_student is not None else {}
    response = platform.client.post("/api/v1/users", headers=platform.admin_headers, json={
        "email": email, "name": "Learner", "password": PASSWORD, "role": "student", "metadata": metadata})
    assert response.status_code == 201, response.text
    return response.json()["id"], platform.login(email)


@pytest.fixture(scope="module")
def course(ml_platform) -> dict:
    instructor_id, instructor = ml_platform.user("instructor")
    course_id = ml_platform.course(instructor, metadata={"presentation": "AAA-2013J"})
    learner_id, learner = _learner(ml_platform, id_student=11391)
    ml_platform.enroll(course_id, learner)
    return {"id": course_id, "instructor": instructor, "learner_id": learner_id, "learner": learner}


def _risk(platform: Platform, user_id: str, course_id: str, headers: dict[str, str]):
    return platform.client.get(f"/api/v1/users/{user_id}/risk", params={"course_id": course_id}, headers=headers)


def test_learner_and_staff_get_the_model_answer_over_http(ml_platform, course, model_service):
    for headers in (course["learner"], course["instructor"], ml_platform.admin_headers):
        response = _risk(ml_platform, course["learner_id"], course["id"], headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["risk_score"] == pytest.approx(0.73) and body["status"] == "scored"
        assert body["model_version"] == "7" and body["fallback"] is False
        assert "X-Learnloop-Fallback" not in response.headers
    assert model_service.seen[-1] == {"student_id": 11391, "course_id": "AAA-2013J"}


def test_a_learner_never_sees_another_learners_risk(ml_platform, course, model_service):
    _, other = _learner(ml_platform, id_student=11392)
    ml_platform.enroll(course["id"], other)  # a classmate: same course, still not allowed
    before = len(model_service.seen)
    response = _risk(ml_platform, course["learner_id"], course["id"], other)
    assert response.status_code == 403, response.text
    assert "risk" in response.json()["error"]["message"]
    _, foreign_instructor = ml_platform.user("instructor")  # staff of another course only
    assert _risk(ml_platform, course["learner_id"], course["id"], foreign_instructor).status_code == 403
    assert len(model_service.seen) == before  # refused before the model service is asked


def test_refusals_name_the_problem(ml_platform, course, model_service):
    admin = ml_platform.admin_headers
    assert _risk(ml_platform, str(uuid.uuid4()), course["id"], admin).status_code == 404
    assert _risk(ml_platform, course["learner_id"], str(uuid.uuid4()), admin).status_code == 404
    outsider_id, _ = _learner(ml_platform, id_student=11391)  # not enrolled
    response = _risk(ml_platform, outsider_id, course["id"], admin)
    assert response.status_code == 409 and "not enrolled" in response.json()["error"]["message"]
    unlinked_id, unlinked = _learner(ml_platform, id_student=None)
    ml_platform.enroll(course["id"], unlinked)
    response = _risk(ml_platform, unlinked_id, course["id"], admin)
    assert response.status_code == 409 and "id_student" in response.json()["error"]["message"]
    unknown_id, unknown = _learner(ml_platform, id_student=999)  # the model service answers 404
    ml_platform.enroll(course["id"], unknown)
    response = _risk(ml_platform, unknown_id, course["id"], admin)
    assert response.status_code == 404 and "model service" in response.json()["error"]["message"]


def test_an_unreadable_answer_is_the_fallback_not_a_500(ml_platform, course, model_service):
    learner_id, learner = _learner(ml_platform, id_student=77)
    ml_platform.enroll(course["id"], learner)
    response = _risk(ml_platform, learner_id, course["id"], learner)
    assert response.status_code == 200, response.text
    assert response.headers["X-Learnloop-Fallback"] == "risk-unavailable"
    assert response.json()["risk_score"] is None and "unreadable" in response.json()["reason"]


def test_service_down_gives_the_fallback_then_the_breaker_opens(ml_platform, course):
    # Nothing listens on the serving port: connection refused → fallback, never a 500.
    for _ in range(ml_platform.app.state.risk_client.breaker.failure_threshold):
        response = _risk(ml_platform, course["learner_id"], course["id"], course["learner"])
        assert response.status_code == 200, response.text
        assert response.headers["X-Learnloop-Fallback"] == "risk-unavailable"
        body = response.json()
        assert body["risk_score"] is None and body["status"] == "unavailable" and body["fallback"] is True
        assert "unreachable" in body["reason"]
    response = _risk(ml_platform, course["learner_id"], course["id"], course["learner"])
    assert response.status_code == 200 and response.headers["X-Learnloop-Fallback"] == "risk-unavailable"
    assert response.json()["reason"].startswith("circuit open")


def test_the_client_keeps_its_timeout(ml_platform):
    client: RiskClient = ml_platform.app.state.risk_client
    assert client.timeout_s == 1.0 and client.base_url.endswith(f":{ml_platform.settings.serving_port}")
