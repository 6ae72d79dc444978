"""The model service's essay grading and recommendation endpoints, against the real `bentoml serve` process."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from serving_fixtures import (
    ESSAY_PROMPT,
    RunningService,
    ServingWorld,
    free_port,
    synthetic_essay,
    train_essay_grader,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def essay_grader(serving_world: ServingWorld, tmp_path_factory: pytest.TempPathFactory):
    # grade_essay reads the prompt's grader from the data dir on each call: training after the service started
    # is what an operator does too.
    train_essay_grader(serving_world.settings, tmp_path_factory.mktemp("essays"))
    return serving_world.settings


def _grade(url: str, text, prompt_id) -> httpx.Response:
    return httpx.post(f"{url}/grade_essay", json={"text": text, "prompt_id": prompt_id}, timeout=30)


def test_grade_essay_serves_the_same_grade_as_grading_nlp(model_service: RunningService, essay_grader):
    from grading_nlp.api import grade_essay

    essay = synthetic_essay(0.8, np.random.default_rng(5))
    response = _grade(model_service.url, essay, ESSAY_PROMPT)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = grade_essay(essay, ESSAY_PROMPT, settings=essay_grader)
    assert body["status"] == "suggested" == expected.status.value
    assert body["score"] == expected.score and tuple(body["interval"]) == expected.interval
    assert body["model_version"] == expected.model_version and body["reasons"] == expected.reasons
    assert body["interval"][0] <= body["score"] <= body["interval"][1]


@pytest.mark.parametrize(("text", "prompt_id", "reason_part"), [
    ("", ESSAY_PROMPT, "shorter than"),
    ("word " * 40_000, ESSAY_PROMPT, "characters"),  # 200,000 characters: a human grades it
    ("A perfectly ordinary essay about the value of libraries in every town.", 7777, "No AI grading model"),
])
def test_bad_essays_get_needs_manual_grading_not_an_error(model_service: RunningService, essay_grader, text,
                                                          prompt_id, reason_part):
    response = _grade(model_service.url, text, prompt_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "needs_manual_grading" and body["score"] is None
    assert any(reason_part in reason for reason in body["reasons"]), body["reasons"]


@pytest.mark.parametrize("payload", [{"text": "x"}, {"text": "an essay", "prompt_id": 0},
                                     {"text": 5, "prompt_id": ESSAY_PROMPT}])
def test_malformed_grading_requests_are_400(model_service: RunningService, payload):
    response = httpx.post(f"{model_service.url}/grade_essay", json=payload, timeout=10)
    assert response.status_code == 400, response.text


def _course(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(12)], "kind": ["page"] * 6 + ["quiz"] * 6})
    opens = pd.DataFrame({"user_id": [f"u{int(u)}" for u in rng.integers(0, 25, 300)],
                          "item_id": [f"i{int(i)}" for i in np.minimum(rng.geometric(0.25, 300) - 1, 11)],
                          "day": rng.integers(0, 20, 300)})
    return items, opens


@pytest.mark.parametrize("user_id", ["u3", "u7", "newcomer"])
def test_recommend_serves_what_the_recommender_computes(model_service: RunningService, user_id: str):
    from recommender.api import recommend
    from serving.api import RecommendClient

    items, opens = _course()
    expected = recommend(user_id=user_id, course_id="c1", interactions=opens, items=items, day=21, limit=5)
    client = RecommendClient(base_url=model_service.url, timeout_s=30)
    try:
        served = client.recommend(user_id=user_id, course_id="c1", interactions=opens, items=items, day=21, limit=5)
    finally:
        client.close()
    assert served.variant == expected.variant and served.cold_start == expected.cold_start
    assert served.model_version == expected.model_version and served.fallback == expected.fallback
    assert [r.item_id for r in served.items] == [r.item_id for r in expected.items]
    assert [r.score for r in served.items] == pytest.approx([r.score for r in expected.items])
    assert served.cold_start is (user_id == "newcomer")


_NO_OPENS = {"users": [], "items": [], "user_index": [], "item_index": [], "day": []}
_TWO_OPENS = {"users": ["u1", "u2"], "items": ["i0"], "user_index": [0, 1], "item_index": [0, 0], "day": [1, 2]}


@pytest.mark.parametrize(("change", "message"), [
    ({"day": -1, "opens": _NO_OPENS}, "greater than or equal to 0"),
    ({"opens": None, "interactions": [{"user_id": "u1", "item_id": "i0", "day": 1}]},
     "opens"),  # the old one-object-per-open form is no longer a request
    ({"opens": {**_TWO_OPENS, "day": [1]}}, "equal lengths"),
    ({"opens": {**_TWO_OPENS, "item_index": [0, 1]}}, "item_index must be a position in items (0 to 0), got 1"),
    ({"opens": {**_TWO_OPENS, "user_index": [0, 2]}}, "user_index must be a position in users (0 to 1), got 2"),
    ({"opens": {**_TWO_OPENS, "user_index": [-1, 0]}}, "greater than or equal to 0"),
    ({"opens": {**_TWO_OPENS, "day": [1, -3]}}, "greater than or equal to 0"),
    ({"opens": {**_TWO_OPENS, "users": ["u1", ""]}}, "at least 1 character"),
    ({"opens": {**_TWO_OPENS, "day": "12"}}, "day is not valid base64"),  # a string is a packed column
])
def test_recommend_rejects_malformed_requests_with_a_400_that_says_why(model_service: RunningService, change,
                                                                       message):
    body = {"user_id": "u1", "course_id": "c1", "day": 3, "items": [{"item_id": "i0"}], "opens": _TWO_OPENS,
            **change}
    body = {key: value for key, value in body.items() if value is not None}
    response = httpx.post(f"{model_service.url}/recommend", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert message in response.text, response.text


def test_recommend_client_raises_unavailable_when_the_service_is_down_then_opens_its_breaker():
    from learnloop.errors import Unavailable
    from serving.api import BreakerState, CircuitBreaker, RecommendClient

    items, opens = _course()
    client = RecommendClient(base_url=f"http://127.0.0.1:{free_port()}", timeout_s=0.5,
                             breaker=CircuitBreaker(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(Unavailable, match="unreachable"):
            client.recommend(user_id="u1", course_id="c1", interactions=opens, items=items, day=3)
    assert client.breaker.state is BreakerState.open
    with pytest.raises(Unavailable, match="circuit open"):
        client.recommend(user_id="u1", course_id="c1", interactions=opens, items=items, day=3)


def test_workers_stay_torch_free_after_grading_and_recommending(model_service: RunningService, essay_grader):
    _grade(model_service.url, synthetic_essay(0.5, np.random.default_rng(9)), ESSAY_PROMPT).raise_for_status()
    items, opens = _course()
    from serving.api import encode_opens

    httpx.post(f"{model_service.url}/recommend", timeout=30, json={
        "user_id": "u1", "course_id": "c1", "day": 21, "items": items.to_dict("records"),
        "opens": encode_opens(opens)}).raise_for_status()
    info = httpx.post(f"{model_service.url}/admin/models", json={}, timeout=10).json()
    assert info["forbidden_modules_loaded"] == []


def test_admin_models_lists_every_model_the_service_serves(model_service: RunningService, serving_world: ServingWorld,
                                                           essay_grader):
    """It listed only the risk champion: the ranker and the essay graders the service also serves were missing."""
    import json
    import os
    import subprocess
    import sys

    from serving.api import ServedModelStatus, served_models

    _grade(model_service.url, synthetic_essay(0.5, np.random.default_rng(4)), ESSAY_PROMPT).raise_for_status()
    reloaded = httpx.post(f"{model_service.url}/admin/reload", json={}, timeout=30).json()
    assert "risk" not in reloaded["errors"] and "recommender" in reloaded["errors"]  # no ranker champion here
    listed = {m.name: m for m in served_models(base_url=model_service.url, timeout_s=10)}
    assert {"risk", "recommender", f"essay_grader_p{ESSAY_PROMPT}"} <= set(listed)
    risk = listed["risk"]
    assert risk.status is ServedModelStatus.loaded and risk.alias == "champion" and risk.version
    assert risk.n_inputs == len(serving_world.feature_names)
    ranker = listed["recommender"]
    assert ranker.status is ServedModelStatus.unavailable and "learnloop train recommender" in ranker.detail
    grader = listed[f"essay_grader_p{ESSAY_PROMPT}"]
    assert grader.status is ServedModelStatus.loaded and grader.version.startswith(f"essay-p{ESSAY_PROMPT}-")
    assert grader.trained_on.endswith("essays.tsv") and grader.trained_at and grader.n_inputs > 0
    raw = httpx.post(f"{model_service.url}/admin/models", json={}, timeout=10).json()
    assert raw["versions"][grader.name] == grader.version and raw["versions"]["risk"] == risk.version
    assert raw["forbidden_modules_loaded"] == []  # looking the ranker up loaded nothing heavy

    # The CLI an operator runs: the same list, and exit 1 because the ranker has no champion.
    cli = subprocess.run([sys.executable, "-m", "learnloop.cli", "models", "served", "--json", "--url",
                          model_service.url], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LEARNLOOP_DATA_DIR": str(serving_world.settings.data_path)})
    assert cli.returncode == 1 and "not served as intended: recommender" in cli.stderr, cli.stderr[-2000:]
    assert {m["name"]: m["status"] for m in json.loads(cli.stdout)["models"]}["risk"] == "loaded"
