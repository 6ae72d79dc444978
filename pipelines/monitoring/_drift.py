"""The Evidently 0.7 drift check. The decision is read from Evidently's *test* results: whether a score means
drift depends on the method Evidently picked (p-value: low = drift; distance: high = drift), so the raw
scores are reported but never compared to a threshold here."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput
from pipelines.monitoring.data import DriftResult, PerformanceMetric, PerformanceResult

log = logging.getLogger(__name__)

DEFAULT_DRIFT_SHARE = 0.5  # Evidently's default: the dataset drifts when half the features do
DEFAULT_PERFORMANCE_DROP = 0.05  # AUC / QWK points lost before a retrain is triggered
DEFAULT_MAX_ROWS = 20_000  # per window; a sample keeps a ~70-feature report at a few seconds
_COLUMN_IN_NAME = re.compile(r"column=(?P<column>[^,)]+)")


def performance_metric_for(model_name: str) -> PerformanceMetric:
    """Risk models are judged by AUC, essay graders by QWK against the instructor's score."""
    return PerformanceMetric.qwk if "grad" in model_name.lower() or "essay" in model_name.lower() \
        else PerformanceMetric.auc


def check_drift(
    model_name: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    categorical_features: Sequence[str] = (),
    prediction_column: str | None = "prediction",
    label_column: str | None = "label",
    metric: PerformanceMetric | None = None,
    reference_performance: float | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    performance_drop: float = DEFAULT_PERFORMANCE_DROP,
    max_rows: int = DEFAULT_MAX_ROWS,
    reports_dir: Path,
    seed: int = 0,
) -> DriftResult:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise InvalidInput(f"{model_name}: the {'reference' if reference.empty else 'current'} window is empty; "
                           "widen the window or check that predictions are being logged")
    if features is None:
        excluded = {prediction_column, label_column}
        features = [c for c in reference.columns if c not in excluded and c in current.columns]
    missing = [name for name in features if name not in reference.columns or name not in current.columns]
    if missing:
        raise InvalidInput(f"{model_name}: features {missing[:5]} are missing from the reference or current window; "
                           "both windows must hold the model's input features")
    # A feature with no value in a window (e.g. clicks where no click data exists) cannot be tested.
    skipped = [name for name in features
               if reference[name].isna().all() or current[name].isna().all()]
    tested = [name for name in features if name not in skipped]
    if not tested:
        raise InvalidInput(f"{model_name}: every feature is empty in one of the windows; nothing to compare")
    categorical = [name for name in tested if name in set(categorical_features)]
    numerical = [name for name in tested if name not in set(categorical)]

    has_prediction = (prediction_column is not None and prediction_column in reference.columns
                      and prediction_column in current.columns
                      and reference[prediction_column].notna().any() and current[prediction_column].notna().any())
    columns = [*tested, *([prediction_column] if has_prediction else [])]
    ref_sample = _sample(reference[columns], max_rows, seed)
    cur_sample = _sample(current[columns], max_rows, seed)
    for frame in (ref_sample, cur_sample):
        for name in numerical + ([prediction_column] if has_prediction else []):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        for name in categorical:
            frame[name] = frame[name].astype("string").fillna("__missing__").astype(str)

    definition = DataDefinition(numerical_columns=numerical + ([prediction_column] if has_prediction else []),
                                categorical_columns=categorical)
    metrics: list = [DataDriftPreset(columns=tested, drift_share=drift_share)]
    if has_prediction:
        metrics.append(ValueDrift(column=prediction_column))
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(cur_sample, data_definition=definition),
        reference_data=Dataset.from_pandas(ref_sample, data_definition=definition),
    )
    payload = snapshot.dict()
    column_failed, dataset_failed, scores, methods = _read_tests(payload)
    drifted = [name for name in tested if column_failed.get(name)]
    if dataset_failed is None:
        raise InvalidInput(f"{model_name}: Evidently returned no dataset drift test; check the evidently version")

    performance = _performance(model_name, reference, current, prediction_column, label_column, metric,
                               reference_performance, performance_drop)
    checked_at = datetime.now(UTC)
    html_path, json_path = _save(snapshot, payload, model_name, checked_at, reports_dir)
    result = DriftResult(
        model_name=model_name,
        drift_detected=bool(dataset_failed),
        drifted_features=drifted,
        share=round(len(drifted) / len(tested), 4),
        prediction_drift=bool(column_failed.get(prediction_column)) if has_prediction else None,
        performance=performance,
        report_html=html_path,
        report_json=json_path,
        n_reference=len(reference),
        n_current=len(current),
        checked_at=checked_at.isoformat(timespec="seconds"),
        feature_scores={name: scores[name] for name in tested if name in scores},
        feature_methods={name: methods[name] for name in tested if name in methods},
        skipped_features=skipped,
    )
    log.info("drift check %s: drift=%s share=%.3f drifted=%s prediction_drift=%s", model_name,
             result.drift_detected, result.share, drifted, result.prediction_drift)
    return result


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True).copy()
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def _read_tests(payload: dict) -> tuple[dict[str, bool], bool | None, dict[str, float], dict[str, str]]:
    """Per-column test failed?, dataset-level test failed?, per-column score and method (for people)."""
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    for metric in payload.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift") and "column" in config:
            value = metric.get("value")
            if isinstance(value, int | float):
                scores[config["column"]] = float(value)
            methods[config["column"]] = str(config.get("method"))
    column_failed: dict[str, bool] = {}
    dataset_failed: bool | None = None
    for test in payload.get("tests", []):
        params = (test.get("metric_config") or {}).get("params") or {}
        kind = params.get("type", "")
        failed = test.get("status") in ("FAIL", "ERROR")
        if kind.endswith(":ValueDrift"):
            column = params.get("column") or _column_from_name(test.get("name", ""))
            # The preset and an explicit ValueDrift may both test one column: any failure is drift.
            column_failed[column] = column_failed.get(column, False) or failed
        elif kind.endswith(":DriftedColumnsCount"):
            dataset_failed = failed if dataset_failed is None else (dataset_failed or failed)
    return column_failed, dataset_failed, scores, methods


def _column_from_name(name: str) -> str:
    match = _COLUMN_IN_NAME.search(name)
    return match.group("column") if match else name.removeprefix("Value Drift for column ").strip()


def _performance(model_name, reference, current, prediction_column, label_column, metric,
                 reference_performance, threshold) -> PerformanceResult | None:
    if prediction_column is None or label_column is None:
        return None
    metric = metric or performance_metric_for(model_name)
    cur = _score(current, prediction_column, label_column, metric)
    if cur is None:
        return None
    ref = reference_performance
    if ref is None:
        scored = _score(reference, prediction_column, label_column, metric)
        ref = scored[0] if scored else None
    value, n = cur
    drop = None if ref is None else round(ref - value, 4)
    return PerformanceResult(metric=metric, reference=None if ref is None else round(ref, 4),
                             current=round(value, 4), n_labelled=n, drop=drop,
                             degraded=drop is not None and drop > threshold)


def _score(frame: pd.DataFrame, prediction_column: str, label_column: str,
           metric: PerformanceMetric) -> tuple[float, int] | None:
    if prediction_column not in frame.columns or label_column not in frame.columns:
        return None
    rows = frame[[prediction_column, label_column]].dropna()
    if len(rows) < 20:  # too few labels to say anything about quality
        return None
    truth = rows[label_column].to_numpy()
    predicted = rows[prediction_column].to_numpy()
    if metric is PerformanceMetric.auc:
        from sklearn.metrics import roc_auc_score

        if len(np.unique(truth)) < 2:
            return None
        return float(roc_auc_score(truth.astype(int), predicted.astype(float))), len(rows)
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(np.rint(truth).astype(int), np.rint(predicted).astype(int),
                                   weights="quadratic")), len(rows)


def _save(snapshot, payload: dict, model_name: str, checked_at: datetime, reports_dir: Path) -> tuple[Path, Path]:
    folder = reports_dir / "drift" / model_name
    folder.mkdir(parents=True, exist_ok=True)
    stem = checked_at.strftime("%Y%m%dT%H%M%S%fZ")
    html_path, json_path = folder / f"{stem}.html", folder / f"{stem}.json"
    snapshot.save_html(str(html_path))
    json_path.write_text(json.dumps(payload, default=str, indent=1))
    return html_path, json_path
