"""A bounded schemathesis run against the app's OpenAPI: no generated request, valid or not, gets a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

MAX_EXAMPLES = 3  # per operation and mode (positive + negative), ~27 operations, derandomized


@pytest.fixture(scope="module")
def known_ids(platform):
    """Real ids so generated requests also reach the code behind the 404s."""
    client = platform.client
    instructor_id, instructor = platform.user("instructor")
    student_id, student = platform.user()
    course_id = platform.course(instructor)
    enrollment_id = platform.enroll(course_id, student)
    content_id = client.post("/api/v1/content", headers=instructor,
                             json={"course_id": course_id, "title": "c"}).json()["id"]
    question_id = client.post("/api/v1/questions", headers=instructor, json={
        "kind": "fill_in_the_blank", "course_id": course_id, "prompt": "?", "accepted": ["a"]}).json()["id"]
    assessment_id = client.post("/api/v1/assessments", headers=instructor, json={
        "course_id": course_id, "title": "a", "question_ids": [question_id]}).json()["id"]
    submission_id = client.post("/api/v1/submissions", headers=student, json={
        "assessment_id": assessment_id, "answers": {question_id: "a"}}).json()["id"]
    return {"user_id": student_id, "course_id": course_id, "enrollment_id": enrollment_id, "content_id": content_id,
            "question_id": question_id, "assessment_id": assessment_id, "submission_id": submission_id}


def _operations(platform):
    schema = schemathesis.openapi.from_asgi("/openapi.json", platform.app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
def test_no_server_errors(platform, known_ids):
    from schemathesis.python.asgi import ASGIClient

    # One in-process client for the whole run (the default opens a client, and a lifespan, per call).
    session = ASGIClient(platform.app)
    failures: list[str] = []
    calls = 0
    for operation in _operations(platform):
        names = {p.name for p in operation.path_parameters}
        # Real ids reach the code behind the 404s (random ids only ever find nothing). DELETE keeps random
        # ids: erasing the fixtures would end the run early.
        if names and operation.method.upper() != "DELETE":
            passes = [{name: known_ids[name] for name in names if name in known_ids}]
        else:
            passes = [None]
        for path_parameters in passes:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

                @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case) -> None:
                    nonlocal calls
                    calls += 1
                    response = case.call(session=session, headers=platform.admin_headers)
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                        f"{response.text[:300]} body={case.body!r:.300}")

                run()
    print(f"schemathesis: {calls} generated requests")
    assert calls > 120, calls
    assert failures == [], "\n".join(failures[:10])
