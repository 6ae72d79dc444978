"""Plain data crossing the ``pipelines.monitoring`` boundary (no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class PerformanceMetric(StrEnum):
    """How a model's quality is measured once labels arrive."""

    auc = "auc"  # risk: ROC AUC of the risk score against the final result (Withdrawn/Fail = 1)
    qwk = "qwk"  # grading: quadratic weighted kappa, AI score vs the instructor's score


class TriggerReason(StrEnum):
    """Why a retraining run was started."""

    feature_drift = "feature_drift"
    prediction_drift = "prediction_drift"
    performance_drop = "performance_drop"


class CheckOutcome(StrEnum):
    """How the latest drift check of a model ended (what ``drift status`` and the operator page show)."""

    checked = "checked"  # reports computed; the drift summary is the model's latest status
    skipped = "skipped"  # nothing to compare yet (no predictions logged, or the log holds no model inputs)
    failed = "failed"  # the check could not run; ``learnloop drift check`` exits non-zero


class GateOutcome(StrEnum):
    """What the promotion gate decided about the challenger trained after drift."""

    promoted = "promoted"
    refused = "refused"
    failed = "failed"  # retraining or the gate itself raised; operators are alerted


@dataclass(frozen=True)
class PerformanceResult:
    """Quality on the reference and current windows (``None`` where that window has no labels)."""

    metric: PerformanceMetric
    reference: float | None
    current: float | None
    n_labelled: int
    drop: float | None  # reference - current (positive = worse now)
    degraded: bool  # drop > the threshold given to check_drift


@dataclass(frozen=True)
class DriftResult:
    """One drift check of one model: the decision comes from Evidently's test results, not raw scores.

    ``drift_detected`` is Evidently's dataset-level test (share of drifted features ≥ ``drift_share``);
    ``drifted_features`` are the features whose per-column drift test failed; ``share`` is their share.
    """

    model_name: str
    drift_detected: bool
    drifted_features: list[str]
    share: float
    prediction_drift: bool | None  # None when the windows carry no predictions
    performance: PerformanceResult | None
    report_html: Path
    report_json: Path
    n_reference: int
    n_current: int
    checked_at: str  # ISO-8601 UTC
    feature_scores: dict[str, float] = field(default_factory=dict)  # Evidently's per-feature drift score
    feature_methods: dict[str, str] = field(default_factory=dict)  # the statistical test used per feature
    skipped_features: list[str] = field(default_factory=list)  # empty in a window: not testable

    @property
    def needs_retraining(self) -> bool:
        return bool(self.trigger_reasons)

    @property
    def trigger_reasons(self) -> list[TriggerReason]:
        reasons = []
        if self.drift_detected:
            reasons.append(TriggerReason.feature_drift)
        if self.prediction_drift:
            reasons.append(TriggerReason.prediction_drift)
        if self.performance is not None and self.performance.degraded:
            reasons.append(TriggerReason.performance_drop)
        return reasons

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (what ``learnloop drift check --json`` prints per model)."""
        payload = asdict(self)
        payload["report_html"] = str(self.report_html)
        payload["report_json"] = str(self.report_json)
        payload["trigger_reasons"] = [reason.value for reason in self.trigger_reasons]
        if self.performance is not None:
            payload["performance"]["metric"] = self.performance.metric.value
        return payload


@dataclass(frozen=True)
class GateDecision:
    """What a ``promote`` callable returns to the trigger: did the challenger become champion, and why."""

    promoted: bool
    reason: str
    challenger_version: str | None = None
    champion_version: str | None = None


@dataclass(frozen=True)
class RetrainOutcome:
    """The end of one trigger: which run was started, the challenger it registered and the gate's decision."""

    model_name: str
    reasons: list[TriggerReason]
    challenger_version: str | None
    outcome: GateOutcome
    detail: str
    at: str
    alert_id: str | None = None  # set when operators were alerted

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["reasons"] = [reason.value for reason in self.reasons]
        payload["outcome"] = self.outcome.value
        return payload


@dataclass(frozen=True)
class ModelStatus:
    """One registered model as the operator page shows it: aliases → versions."""

    name: str
    aliases: dict[str, str]  # e.g. {"champion": "3", "challenger": "4"}
    latest_versions: list[str] = field(default_factory=list)
