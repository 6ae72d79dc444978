"""The Evidently drift check: decisions from test results, per-feature drift, prediction and performance drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CLICK_FEATURES, FEATURES, OTHER_FEATURES, risk_window

from learnloop.errors import InvalidInput
from pipelines.monitoring.api import PerformanceMetric, check_drift, latest_status


def test_shifted_click_features_drift_and_nothing_else(settings, reference_window, drifted_window):
    result = check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                         settings=settings)

    assert result.drift_detected is True
    assert set(result.drifted_features) == set(CLICK_FEATURES)
    assert result.share == pytest.approx(len(CLICK_FEATURES) / len(FEATURES))
    # Both report forms exist under the reports dir: HTML for people, Evidently's JSON for machines.
    assert result.report_html.is_file() and result.report_html.is_relative_to(settings.reports_dir)
    assert "<html" in result.report_html.read_text()[:2000].lower()
    payload = json.loads(result.report_json.read_text())
    failed = {t["metric_config"]["params"].get("column") for t in payload["tests"] if t["status"] == "FAIL"}
    assert set(CLICK_FEATURES) <= failed
    # The check is remembered for the operator page and the metrics.
    assert latest_status(settings=settings)["risk"]["drifted_features"] == result.drifted_features


def test_same_distribution_does_not_drift(settings, reference_window, same_distribution_window):
    result = check_drift("risk", reference_window, same_distribution_window, features=FEATURES,
                         prediction_column=None, settings=settings)

    assert result.drift_detected is False
    assert result.drifted_features == []
    assert result.trigger_reasons == []


def test_drift_share_threshold_comes_from_the_dataset_test(settings, reference_window, drifted_window):
    # Half the features drift; with a higher required share the dataset-level test passes.
    strict = check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                         drift_share=0.75, settings=settings, record=False)

    assert set(strict.drifted_features) == set(CLICK_FEATURES)
    assert strict.drift_detected is False


def test_prediction_drift_and_performance_drop(settings, reference_window, same_distribution_window):
    rng = np.random.default_rng(0)
    reference = reference_window.assign(prediction=lambda f: np.clip(0.25 + 0.5 * f["label"]
                                                                     + rng.normal(0, 0.2, len(f)), 0, 1))
    # Same features, but the model's scores no longer track the outcome and sit higher: both must show.
    current = same_distribution_window.assign(prediction=rng.uniform(0.4, 1.0, len(same_distribution_window)))

    result = check_drift("risk", reference, current, features=OTHER_FEATURES, settings=settings, record=False)

    assert result.prediction_drift is True
    assert result.performance is not None and result.performance.metric is PerformanceMetric.auc
    assert result.performance.reference > 0.85
    assert result.performance.current == pytest.approx(0.5, abs=0.1)
    assert result.performance.degraded is True
    assert {reason.value for reason in result.trigger_reasons} == {"prediction_drift", "performance_drop"}


def test_grading_models_are_judged_by_qwk(settings):
    rng = np.random.default_rng(4)
    instructor = rng.integers(1, 7, 400).astype(float)
    frame = __import__("pandas").DataFrame({"essay_length": rng.normal(300, 50, 400), "label": instructor})
    reference = frame.assign(prediction=instructor)  # perfect agreement
    current = frame.assign(prediction=rng.integers(1, 7, 400).astype(float))  # random scores

    result = check_drift("essay_grader", reference, current, features=["essay_length"], settings=settings,
                         record=False)

    assert result.performance.metric is PerformanceMetric.qwk
    assert result.performance.reference == pytest.approx(1.0)
    assert result.performance.current < 0.2
    assert result.performance.degraded is True


def test_a_feature_empty_in_one_window_is_skipped_not_tested(settings, reference_window, same_distribution_window):
    current = same_distribution_window.assign(clicks_total_7d=np.nan)

    result = check_drift("risk", reference_window, current, features=FEATURES, prediction_column=None,
                         settings=settings, record=False)

    assert result.skipped_features == ["clicks_total_7d"]
    assert "clicks_total_7d" not in result.feature_scores


def test_bad_windows_are_refused_with_a_reason(settings, reference_window):
    with pytest.raises(InvalidInput, match="current window is empty"):
        check_drift("risk", reference_window, reference_window.iloc[0:0], settings=settings)
    with pytest.raises(InvalidInput, match="missing"):
        check_drift("risk", reference_window, risk_window(50, seed=9).drop(columns=["n_missed"]),
                    features=FEATURES, settings=settings)
