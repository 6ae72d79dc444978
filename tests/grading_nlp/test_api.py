"""Model tests through the public surface: grades, bad input, confidence routing, ONNX export, cold start."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grading_nlp.api import MAX_ESSAY_CHARS, grade_essay
from grading_nlp.data import GradeStatus


@pytest.fixture(scope="module")
def good(essay_maker) -> str:
    return essay_maker(0.8, 11)


def test_a_trained_prompt_gets_a_suggested_grade_with_interval_and_reasons(grading_settings, good: str) -> None:
    grade = grade_essay(good, 3, settings=grading_settings)
    assert grade.status is GradeStatus.suggested
    assert grade.score_range == (0, 3)
    assert 0 <= grade.score <= 3
    assert grade.interval[0] <= grade.score <= grade.interval[1]
    assert 0.0 <= grade.confidence <= 1.0
    assert grade.model_version.startswith("essay-p3-full-")
    assert grade.reasons and all(isinstance(r, str) and r for r in grade.reasons)


def test_better_essays_get_higher_grades(grading_settings, essay_maker) -> None:
    strong = [grade_essay(essay_maker(0.9, s), 3, settings=grading_settings).score
              for s in range(5)]
    weak = [grade_essay(essay_maker(0.05, 100 + s), 3, settings=grading_settings).score
            for s in range(5)]
    assert np.mean(strong) >= np.mean(weak) + 1.5


@pytest.mark.parametrize(
    ("essay", "expected"),
    [
        ("", "empty"),
        ("   \n\t  ", "empty"),
        ("x" * 200_000, f"{MAX_ESSAY_CHARS:,}"),
        (b"\x81\x8d\x8f\x90\x9d" * 20, "not readable text"),
    ],
    ids=["empty", "whitespace", "200k-chars", "undecodable-bytes"],
)
def test_bad_input_needs_manual_grading_with_a_reason(grading_settings, essay, expected: str) -> None:
    grade = grade_essay(essay, 3, settings=grading_settings)
    assert grade.status is GradeStatus.needs_manual_grading
    assert grade.score is None and grade.needs_review
    assert expected in grade.reasons[0]


def test_a_prompt_without_a_model_needs_manual_grading(grading_settings, good: str) -> None:
    for prompt in (1, 99):  # 1: only 10 graded essays, 99: never seen
        grade = grade_essay(good, prompt, settings=grading_settings)
        assert grade.status is GradeStatus.needs_manual_grading
        assert "No AI grading model" in grade.reasons[0]


def test_windows_1252_bytes_are_graded_but_routed_to_review(grading_settings, good: str) -> None:
    grade = grade_essay(good.replace("the", "th\u00e9").encode("cp1252"), 3, settings=grading_settings)
    assert grade.status is GradeStatus.suggested
    assert grade.needs_review
    assert "Windows-1252" in grade.reasons[0]
    utf8 = grade_essay(good.encode("utf-8"), 3, settings=grading_settings)
    assert utf8.score == grade_essay(good, 3, settings=grading_settings).score


def test_off_distribution_essays_are_routed_to_review(grading_settings) -> None:
    rng = np.random.default_rng(5)
    gibberish = " ".join("".join(rng.choice(list("qxzjkvwp"), size=7)) for _ in range(120)) + "."
    grade = grade_essay(gibberish, 3, settings=grading_settings)
    assert grade.status is GradeStatus.suggested
    assert grade.needs_review
    assert any(reason.startswith("Unusual essay") for reason in grade.reasons)


def test_review_routing_follows_interval_width(grading_settings, essay_maker) -> None:
    grades = [grade_essay(essay_maker(float(q), 200 + i), 3, settings=grading_settings)
              for i, q in enumerate(np.linspace(0.05, 0.95, 16))]
    flagged = [g.interval[1] - g.interval[0] for g in grades if g.needs_review]
    passed = [g.interval[1] - g.interval[0] for g in grades if not g.needs_review]
    assert passed, "some in-distribution essays should not need review"
    assert max(passed) <= min(flagged, default=max(passed)) or np.mean(flagged) >= np.mean(passed)
    assert all(g.confidence >= f.confidence for g in grades if not g.needs_review
               for f in grades if f.needs_review and not any(r.startswith("Unusual") for r in f.reasons))


def test_few_shot_prompt_grades_are_always_reviewed(grading_settings, good: str) -> None:
    grade = grade_essay(good, 2, settings=grading_settings)
    assert grade.status is GradeStatus.suggested
    assert grade.model_version.startswith("essay-p2-few_shot-")
    assert 1 <= grade.score <= 6
    assert grade.needs_review


def test_saved_heads_are_onnx_with_parity(grading_settings, good, essay_maker) -> None:
    import onnxruntime as ort

    from grading_nlp import _store

    for prompt in (2, 3):
        directory = _store.prompt_dir(grading_settings, prompt)
        meta = json.loads((directory / _store.META_FILE).read_text())
        assert meta["onnx_parity_max_abs_diff"] <= 1e-5
        loaded = _store.load_model(grading_settings, prompt)
        dense, _ = loaded.model.dense([good, essay_maker(0.1, 12)])
        session = ort.InferenceSession(str(directory / _store.HEAD_FILE), providers=["CPUExecutionProvider"])
        onnx_out = session.run(None, {"features": dense})[0].ravel()
        np.testing.assert_allclose(onnx_out, loaded.model.scorers.head.predict(dense), atol=1e-5)


def test_grading_in_a_fresh_process_loads_neither_torch_nor_sentence_transformers(grading_settings, good) -> None:
    import os
    import subprocess
    import sys

    code = ("import json, sys\n"
            "from grading_nlp.api import grade_essay\n"
            "from learnloop.settings import Settings\n"
            f"grade = grade_essay({good!r}, 3, settings=Settings(data_dir={str(grading_settings.data_path)!r}))\n"
            "print(json.dumps({'status': grade.status.value, 'score': grade.score,\n"
            "                  'heavy': sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules)}))\n")
    env = {**os.environ, "LEARNLOOP_DATA_DIR": str(grading_settings.data_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "suggested" and 0 <= result["score"] <= 3
    assert result["heavy"] == []
