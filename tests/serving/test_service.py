"""The model service as it runs in production: a `bentoml serve` subprocess reading the registry and Feast."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_fixtures import (
    COURSE,
    OTHER_COURSE,
    STUDENT_FULL,
    STUDENT_NEW,
    STUDENT_OTHER,
    UNKNOWN_COURSE,
    UNKNOWN_STUDENT,
    RunningService,
    ServingWorld,
    register_and_promote,
)

pytestmark = pytest.mark.integration


def _predict(url: str, student_id, course_id, client: httpx.Client | None = None) -> httpx.Response:
    poster = client or httpx
    return poster.post(f"{url}/predict_risk", json={"student_id": student_id, "course_id": course_id}, timeout=10)


def _champion_probability(world: ServingWorld, features: dict[str, float]) -> float:
    from models.api import OnnxClassifier, load_champion_onnx

    champion = load_champion_onnx("risk", settings=world.settings)
    frame = pd.DataFrame([{name: features.get(name, np.nan) for name in world.feature_names}])
    frame["has_click_data"] = frame["has_click_data"].fillna(0.0)
    frame["course_has_click_data"] = frame["course_has_click_data"].fillna(0.0)
    return float(OnnxClassifier(champion.onnx_bytes, champion.schema).predict_proba(frame)[0])


def test_scores_an_enrolled_student_with_the_champion(model_service: RunningService, serving_world: ServingWorld):
    response = _predict(model_service.url, STUDENT_FULL, COURSE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "scored"
    assert body["model_name"] == "risk" and body["model_version"]
    # The service fed the registration's online features to the champion: same score as scoring them offline.
    assert body["risk_score"] == pytest.approx(_champion_probability(serving_world, serving_world.full_features),
                                               abs=1e-6)


def test_new_student_without_activity_gets_a_marked_cold_start_score(model_service: RunningService):
    response = _predict(model_service.url, STUDENT_NEW, COURSE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cold_start"
    assert 0.0 <= body["risk_score"] <= 1.0
    assert "student_course_activity" in body["reason"] and "student_course_assessments" in body["reason"]


@pytest.mark.parametrize(("student_id", "course_id", "reason"), [
    (UNKNOWN_STUDENT, COURSE, "unknown_student"),
    (STUDENT_OTHER, COURSE, "not_enrolled"),
    (STUDENT_FULL, OTHER_COURSE, "not_enrolled"),
    (STUDENT_FULL, UNKNOWN_COURSE, "unknown_course"),
])
def test_refusals_are_defined_404s(model_service: RunningService, student_id, course_id, reason):
    response = _predict(model_service.url, student_id, course_id)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["status"] == "refused" and body["reason"] == reason and body["risk_score"] is None


@pytest.mark.parametrize("payload", [{"student_id": -1, "course_id": COURSE}, {"student_id": 5, "course_id": ""},
                                     {"student_id": 5, "course_id": "AAA'; DROP TABLE x"},
                                     {"student_id": "abc", "course_id": COURSE}, {"course_id": COURSE}])
def test_malformed_requests_are_400(model_service: RunningService, payload):
    response = httpx.post(f"{model_service.url}/predict_risk", json=payload, timeout=10)
    assert response.status_code == 400, response.text


def _service_pids(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        found.extend(frontier)
    return found


def test_service_processes_never_load_torch_or_feast(model_service: RunningService):
    _predict(model_service.url, STUDENT_FULL, COURSE)
    # The worker's own sys.modules, after it loaded the champion and answered.
    info = httpx.post(f"{model_service.url}/admin/models", json={}, timeout=10).json()
    assert info["versions"]["risk"] and info["forbidden_modules_loaded"] == []
    # And no process of the service (arbiter, workers) has torch's shared libraries mapped.
    pids = _service_pids(model_service.process.pid)
    assert len(pids) >= 2, "expected the arbiter and at least one worker"
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "libtorch" not in maps and "/torch/" not in maps, f"process {pid} of the service mapped torch"


def test_service_module_imports_no_torch_training_or_feast():
    import subprocess
    import sys

    code = ("import sys, serving._service, serving.api; "
            "print(sorted(m for m in ('torch', 'training', 'feast', 'sentence_transformers', 'pipelines') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_prediction_is_logged_for_monitoring(model_service: RunningService, serving_world: ServingWorld):
    response = _predict(model_service.url, STUDENT_FULL, COURSE)
    version = response.json()["model_version"]
    log_dir = serving_world.settings.data_path / "predictions" / "risk"
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline and not records:
        time.sleep(0.3)
        records = [json.loads(line) for path in log_dir.glob("*.jsonl") for line in path.read_text().splitlines()
                   if f'"{STUDENT_FULL}:{COURSE}"' in line]
    assert records, "no prediction reached the log"
    record = records[-1]
    assert record["model_name"] == "risk" and record["model_version"] == version
    assert set(record["features"]) == set(serving_world.feature_names)
    assert record["features"]["has_click_data"] == pytest.approx(serving_world.full_features["has_click_data"])
    assert 0.0 <= record["output"]["risk_score"] <= 1.0 and record["latency_ms"] > 0


def test_hot_swap_through_a_promotion_fails_no_request(model_service: RunningService, serving_world: ServingWorld):
    before = _predict(model_service.url, STUDENT_FULL, COURSE).json()["model_version"]
    outcomes: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def fire() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    response = _predict(model_service.url, STUDENT_FULL, COURSE, client)
                    outcomes.append((response.status_code, response.json().get("model_version")))
                except httpx.HTTPError as exc:
                    outcomes.append((0, repr(exc)))

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        new_version = register_and_promote(serving_world.settings, serving_world.feature_names, seed=2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(v == new_version for _, v in outcomes[-5:]):
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert new_version != before
    failed = [outcome for outcome in outcomes if outcome[0] != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed during the swap: {failed[:3]}"
    versions = [version for _, version in outcomes]
    assert versions[-1] == new_version
    first_new = versions.index(new_version)
    # Per-thread order interleaves, so allow the two in-flight requests at the switch to still carry the old one.
    assert versions[first_new:].count(before) <= 2
    assert len(outcomes) > 20


def test_operator_reload_reports_the_champion_it_serves(model_service: RunningService, serving_world: ServingWorld):
    from models.api import load_champion_onnx

    info = httpx.post(f"{model_service.url}/admin/reload", json={}, timeout=30).json()
    assert "risk" not in info["errors"]  # (the recommender has no champion in this world: it is listed there)
    assert info["versions"]["risk"] == load_champion_onnx("risk", settings=serving_world.settings).version
