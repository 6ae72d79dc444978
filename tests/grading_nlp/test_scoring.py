"""Code tests of the scoring rules: rounding and clipping per rubric range, cut-point tuning, QWK, model choice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from grading_nlp._model import (
    _qwk,
    choose_model_kind,
    choose_thresholds,
    covering_ratios,
    default_thresholds,
    stretched_thresholds,
    to_scores,
    tune_thresholds,
)
from grading_nlp.data import ModelKind
from learnloop.datasets import PROMPT_SCORE_RANGES


@pytest.mark.parametrize("prompt", sorted(PROMPT_SCORE_RANGES))
def test_scores_are_rounded_and_clipped_to_the_prompt_range(prompt: int) -> None:
    low, high = PROMPT_SCORE_RANGES[prompt]
    values = np.array([low - 5.0, low + 0.49, low + 0.51, (low + high) / 2 + 0.2, high - 0.4, high + 7.0])
    scores = to_scores(values, default_thresholds((low, high)), (low, high))
    assert scores.dtype.kind == "i"
    assert scores.min() >= low and scores.max() <= high
    assert scores[0] == low and scores[-1] == high
    assert scores[1] == low and scores[2] == low + 1
    assert scores[4] == high


def test_qwk_matches_sklearn_on_a_tiny_set() -> None:
    truth = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    predicted = np.array([0, 1, 1, 3, 2, 2, 1, 1])
    assert _qwk(truth, predicted) == pytest.approx(cohen_kappa_score(truth, predicted, weights="quadratic"))
    assert _qwk(truth, truth) == 1.0
    assert _qwk(truth, 3 - truth) < 0


def test_tuned_cut_points_undo_shrinkage_towards_the_mean() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=400)
    shrunk = 1.5 + 0.45 * (truth - 1.5) + rng.normal(0, 0.15, size=400)  # a regressor's typical compression
    plain = _qwk(truth, to_scores(shrunk, default_thresholds((0, 3)), (0, 3)))
    tuned = tune_thresholds(shrunk, truth, (0, 3))
    assert np.all(np.diff(tuned) > 0)
    assert _qwk(truth, to_scores(shrunk, tuned, (0, 3))) > plain + 0.05


@pytest.mark.parametrize(("graded", "kind"), [(0, None), (19, None), (20, ModelKind.few_shot),
                                              (50, ModelKind.few_shot), (299, ModelKind.few_shot),
                                              (300, ModelKind.full), (1800, ModelKind.full)])
def test_model_kind_depends_on_how_many_essays_are_graded(graded: int, kind: ModelKind | None) -> None:
    assert choose_model_kind(graded) is kind


def test_stretched_cut_points_undo_shrinkage_with_one_parameter() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, size=60)
    shrunk = 1.5 + 0.5 * (truth - 1.5) + rng.normal(0, 0.2, size=60)
    stretched = stretched_thresholds(shrunk, truth, (0, 3))
    assert np.all(np.diff(stretched) > 0)
    # The cut points move towards the predictions' mean, by at most the bound on the stretch factor.
    assert np.all(np.abs(stretched - shrunk.mean()) < np.abs(default_thresholds((0, 3)) - shrunk.mean()))
    fresh = rng.integers(0, 4, size=400)
    fresh_values = 1.5 + 0.5 * (fresh - 1.5) + rng.normal(0, 0.2, size=400)
    plain = _qwk(fresh, to_scores(fresh_values, default_thresholds((0, 3)), (0, 3)))
    assert _qwk(fresh, to_scores(fresh_values, stretched, (0, 3))) > plain + 0.05
    # Predictions as spread out as the truth are left to plain rounding.
    np.testing.assert_allclose(stretched_thresholds(truth * 1.0, truth, (0, 3)), default_thresholds((0, 3)))


def test_threshold_rule_is_chosen_on_held_out_halves_of_the_dev_split() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, size=400)
    shrunk = 1.5 + 0.45 * (truth - 1.5) + rng.normal(0, 0.15, size=400)
    thresholds, rule = choose_thresholds(shrunk, truth, (0, 3))
    assert rule in ("tuned", "stretched")
    plain = _qwk(truth, to_scores(shrunk, default_thresholds((0, 3)), (0, 3)))
    assert _qwk(truth, to_scores(shrunk, thresholds, (0, 3))) > plain + 0.05
    calibrated = truth + rng.normal(0, 0.2, size=400)  # nothing to correct: plain rounding stays
    thresholds, _ = choose_thresholds(calibrated, truth, (0, 3))
    np.testing.assert_allclose(thresholds, default_thresholds((0, 3)))


def test_covering_ratio_is_the_smallest_half_width_whose_integer_interval_holds_the_truth() -> None:
    # The conformal interval is reported on integer scores; its calibration must be too (continuous residuals
    # over-covered: 0.95 for a 0.8 target once both ends were rounded).
    rng = np.random.default_rng(4)
    score_range = (2, 12)
    thresholds = np.sort(rng.uniform(2.3, 11.7, 10))
    unit = rng.uniform(0, 1, 500)
    sigma = rng.uniform(0.02, 0.2, 500)
    truth = rng.integers(2, 13, 500)
    ratios = covering_ratios(unit, sigma, truth, thresholds, score_range)
    span = 10

    def interval(half):
        return (to_scores(2 + (unit - half) * span, thresholds, score_range),
                to_scores(2 + (unit + half) * span, thresholds, score_range))

    low, high = interval(ratios * sigma)
    assert np.all((low <= truth) & (truth <= high))
    inside = ratios > 0
    low, high = interval(ratios * sigma * (1 - 1e-6))
    assert not np.any((low <= truth) & (truth <= high) & inside)
    # A quantile q of the ratios covers exactly the essays whose ratio is at most q.
    q = np.quantile(ratios, 0.8)
    low, high = interval(q * sigma)
    np.testing.assert_array_equal((low <= truth) & (truth <= high), ratios <= q)
