"""Public surface of ``pipelines.monitoring``: drift checks with Evidently 0.7, the retraining trigger, operator
alerts, Prometheus metrics and the operator page.

This module imports no training/models/feast/mlflow code (directly or lazily), so the platform API may mount
:func:`operator_router`; the windows of real checks (champion training data, prediction log scored by the
champion) are composed in ``pipelines.monitoring.cli``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from learnloop.settings import Settings, get_settings
from pipelines.monitoring import _state, _trigger
from pipelines.monitoring._drift import DEFAULT_DRIFT_SHARE, DEFAULT_MAX_ROWS, DEFAULT_PERFORMANCE_DROP
from pipelines.monitoring._trigger import PromoteFn, RetrainFn
from pipelines.monitoring.data import (
    CheckOutcome,
    DriftResult,
    GateDecision,
    GateOutcome,
    ModelStatus,
    PerformanceMetric,
    PerformanceResult,
    RetrainOutcome,
    TriggerReason,
)

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = [
    "CheckOutcome",
    "DEFAULT_DRIFT_SHARE",
    "DEFAULT_PERFORMANCE_DROP",
    "DriftResult",
    "GateDecision",
    "GateOutcome",
    "ModelStatus",
    "PerformanceMetric",
    "PerformanceResult",
    "PromoteFn",
    "RetrainFn",
    "RetrainOutcome",
    "TriggerReason",
    "check_drift",
    "handle_drift",
    "latest_status",
    "metrics_text",
    "operator_alerts",
    "operator_router",
    "raise_operator_alert",
    "read_prediction_log",
    "record_registry",
    "record_unchecked",
    "retrain_history",
]


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
    record: bool = True,
    settings: Settings | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference`` (the model's training data) using Evidently's ``DataDriftPreset``.

    Per-feature drift and dataset drift (``share`` of drifted features ≥ ``drift_share``) are read from
    Evidently's test results; ``prediction_column`` (when both windows hold it) gets its own drift test;
    where ``label_column`` is filled, performance (AUC for risk, QWK for grading — ``metric`` overrides) is
    compared with ``reference_performance`` (default: measured on the reference window) and flagged as degraded
    when it dropped by more than ``performance_drop``. Windows above ``max_rows`` are sampled (seeded).
    Reports are saved as HTML and JSON under ``settings.reports_dir / "drift" / model_name``; with ``record``
    the result becomes the model's latest status (operator page, ``/metrics``).
    Raises ``InvalidInput`` for empty windows or features missing from a window.
    """
    from pipelines.monitoring._drift import check_drift as _check

    settings = settings or get_settings()
    result = _check(model_name, reference, current, features=features, categorical_features=categorical_features,
                    prediction_column=prediction_column, label_column=label_column, metric=metric,
                    reference_performance=reference_performance, drift_share=drift_share,
                    performance_drop=performance_drop, max_rows=max_rows, reports_dir=settings.reports_dir)
    if record:
        _trigger.record_check(settings.data_path, result)
    return result


def handle_drift(result: DriftResult, *, retrain: RetrainFn, promote: PromoteFn,
                 settings: Settings | None = None) -> RetrainOutcome | None:
    """Close the loop for one checked model: when ``result`` shows feature drift, prediction drift or a performance
    drop, call ``retrain(model_name, reasons) -> challenger_version`` and then ``promote(model_name) ->
    GateDecision``. The gate decision is logged (log line + ``monitoring/retrain_log.jsonl`` + counter); a refused
    gate or a failed run raises an operator alert. Returns ``None`` (and calls nothing) when no reason applies."""
    return _trigger.handle_result(result, retrain=retrain, promote=promote,
                                  data_path=(settings or get_settings()).data_path)


def raise_operator_alert(model_name: str, message: str, *, settings: Settings | None = None) -> str:
    """Record an alert for operators (``monitoring/operator_alerts.jsonl``, an ERROR log line, the
    ``learnloop_operator_alerts_total`` counter); returns its id."""
    return _trigger.raise_operator_alert((settings or get_settings()).data_path, model_name=model_name,
                                         message=message)


def record_registry(models: Sequence[ModelStatus], *, settings: Settings | None = None) -> None:
    """Remember the registry's models, aliases and versions for the operator page (a process that cannot reach
    the registry shows this snapshot)."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    payload = {"at": at, "models": [{"name": m.name, "aliases": dict(m.aliases), "versions": list(m.latest_versions)}
                                    for m in models]}
    _state.update_state((settings or get_settings()).data_path, lambda state: state.__setitem__("registry", payload))


def record_unchecked(model_name: str, outcome: CheckOutcome, reason: str, *, settings: Settings | None = None) -> None:
    """Record that the latest check of ``model_name`` produced no report: ``skipped`` (nothing to compare yet,
    e.g. no predictions logged) or ``failed`` (counted, logged as an error). ``reason`` is shown to operators;
    the model's last drift summary is kept. (A completed check is recorded by :func:`check_drift`.)"""
    _trigger.record_unchecked((settings or get_settings()).data_path, model_name, outcome, reason)


def latest_status(*, settings: Settings | None = None) -> dict[str, dict]:
    """The latest drift summary per model (as printed by ``learnloop drift check --json``) plus ``last_check``:
    how its latest check ended (``outcome`` checked/skipped/failed, ``at``, ``reason``). A model whose checks
    never completed has ``last_check`` only."""
    state = _state.read_state((settings or get_settings()).data_path)
    summaries, checks = state.get("models", {}), state.get("checks", {})
    return {name: {**summaries.get(name, {}), "last_check": checks.get(name)}
            for name in sorted(set(summaries) | set(checks))}


def retrain_history(*, settings: Settings | None = None) -> list[dict]:
    """Every drift-triggered retraining with its gate decision, oldest first."""
    return _state.read_lines((settings or get_settings()).data_path, _state.RETRAIN_LOG)


def operator_alerts(*, settings: Settings | None = None) -> list[dict]:
    """Every operator alert raised by monitoring, oldest first."""
    return _state.read_lines((settings or get_settings()).data_path, _state.ALERTS_FILE)


def read_prediction_log(*, model_name: str | None = None, since: datetime | None = None,
                        until: datetime | None = None, settings: Settings | None = None) -> pd.DataFrame:
    """The serving prediction log (``<data_dir>/predictions/**/*.jsonl``, schema in ``_prediction_log``) as one
    frame: ``ts, model_name, model_version, request_id, prediction, latency_ms`` then the logged features."""
    from pipelines.monitoring._prediction_log import read_prediction_log as _read

    return _read((settings or get_settings()).data_path, model_name=model_name, since=since, until=until)


def metrics_text(*, settings: Settings | None = None) -> bytes:
    """Prometheus exposition of the monitoring metrics (drift share, checks, retrain triggers, gate decisions,
    operator alerts, prediction volume and latency histogram), computed from the files on disk."""
    from pipelines.monitoring._metrics import metrics_text as _text

    return _text((settings or get_settings()).data_path)


def operator_router(*, settings: Settings | None = None,
                    list_models: Callable[[], list[ModelStatus]] | None = None,
                    prefix: str = "/operator",
                    services: Callable[[], list[dict[str, Any]]] | None = None,
                    served: Callable[[], list[dict[str, Any]]] | None = None) -> APIRouter:
    """A FastAPI router for the operator page: ``GET {prefix}`` (HTML), ``{prefix}/status`` (JSON),
    ``{prefix}/reports/{model}/{file}`` (saved Evidently reports) and ``{prefix}/metrics`` (Prometheus).

    ``list_models`` gives live registry state; without it the page shows the snapshot recorded by the last
    ``learnloop drift check`` (so the platform API needs no registry import). Settings are read per request
    unless given. ``services`` gives the health rows of the platform's parts (``{"name", "status", "detail",
    "figures"}``) shown first. ``served`` gives what the model service serves, one dict per model
    (``serving.api.ServedModel``: name, status, version, alias or origin, input count), shown beside each model;
    it raises ``LearnloopError`` when the service does not answer. Mount with
    ``app.include_router(operator_router())`` behind operator authorization.
    """
    from pipelines.monitoring._operator import operator_router as _router

    return _router(settings=settings, list_models=list_models, prefix=prefix, services=services, served=served)
