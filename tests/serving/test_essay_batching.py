"""Adaptive batching of /grade_essay: a batch grades every essay exactly as alone (bad ones included), and
concurrent requests through the real service — batched by BentoML's dispatcher — each get their own grade."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from serving_fixtures import ESSAY_PROMPT, RunningService, ServingWorld, synthetic_essay, train_essay_grader

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batching_essay_grader(serving_world: ServingWorld, tmp_path_factory: pytest.TempPathFactory):
    train_essay_grader(serving_world.settings, tmp_path_factory.mktemp("essays-batching"))
    return serving_world.settings


def _essays(count: int) -> list[str]:
    rng = np.random.default_rng(23)
    return [synthetic_essay(float(quality), rng) for quality in np.linspace(0.05, 0.95, count)]


def test_a_batch_grades_each_essay_as_alone(batching_essay_grader):
    from grading_nlp.api import grade_essay, grade_essays

    items = [(text, ESSAY_PROMPT) for text in _essays(12)]
    items += [("", ESSAY_PROMPT), ("too short", ESSAY_PROMPT), (b"\xff\xfe\xfa not text \x81", ESSAY_PROMPT),
              ("An ordinary essay about libraries in every town and why they matter.", 7777), ("x" * 50_001, ESSAY_PROMPT)]
    batched = grade_essays(items, settings=batching_essay_grader)
    alone = [grade_essay(text, prompt, settings=batching_essay_grader) for text, prompt in items]
    assert batched == alone
    assert {grade.status.value for grade in batched[:12]} == {"suggested"}
    assert len({grade.score for grade in batched[:12]}) > 1  # distinct essays, distinct grades: no row mix-up
    assert all(grade.status.value == "needs_manual_grading" for grade in batched[12:])


def test_concurrent_essays_through_the_service_each_get_their_own_grade(model_service: RunningService,
                                                                        batching_essay_grader):
    from grading_nlp.api import grade_essay

    essays = _essays(24)

    def grade(text: str) -> dict:
        response = httpx.post(f"{model_service.url}/grade_essay", json={"text": text, "prompt_id": ESSAY_PROMPT},
                              timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(grade, essays * 2))  # twice: the dispatcher's warm-up, then batches
    for text, answer in zip(essays * 2, answers, strict=True):
        expected = grade_essay(text, ESSAY_PROMPT, settings=batching_essay_grader)
        assert answer["status"] == expected.status.value == "suggested"
        assert (answer["score"], tuple(answer["interval"]), answer["reasons"]) == (
            expected.score, expected.interval, expected.reasons)
