"""Close the loop: drift or a performance drop starts a retraining run whose challenger meets the promotion
gate. Nobody is paged unless the gate refuses the challenger or the run fails."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipelines.monitoring import _state
from pipelines.monitoring.data import (
    CheckOutcome,
    DriftResult,
    GateDecision,
    GateOutcome,
    RetrainOutcome,
    TriggerReason,
)

log = logging.getLogger(__name__)

# retrain(model_name, reasons) -> the version it registered as challenger
RetrainFn = Callable[[str, list[TriggerReason]], str]
# promote(model_name) -> the gate's decision about the current challenger
PromoteFn = Callable[[str], GateDecision]


def record_check(data_path: Path, result: DriftResult) -> None:
    """Remember the latest result per model and count the check (the operator page and /metrics read this)."""

    def change(state: dict) -> None:
        state.setdefault("models", {})[result.model_name] = result.summary()
        state.setdefault("checks", {})[result.model_name] = {
            "outcome": CheckOutcome.checked.value, "at": result.checked_at, "reason": None}
        _state.bump(state, "drift_checks", result.model_name)
        if result.drift_detected:
            _state.bump(state, "drift_detected", result.model_name)

    _state.update_state(data_path, change)


def record_unchecked(data_path: Path, model_name: str, outcome: CheckOutcome, reason: str) -> None:
    """Remember a check that produced no report (skipped or failed) and why; the last report stays as it was."""
    if outcome is CheckOutcome.checked:
        raise ValueError("a completed check is recorded with its result (record_check)")
    at = datetime.now(UTC).isoformat(timespec="seconds")

    def change(state: dict) -> None:
        state.setdefault("checks", {})[model_name] = {"outcome": outcome.value, "at": at, "reason": reason}
        if outcome is CheckOutcome.failed:
            _state.bump(state, "drift_check_failures", model_name)

    _state.update_state(data_path, change)
    if outcome is CheckOutcome.failed:
        log.error("drift check of %s failed: %s", model_name, reason)


def handle_result(result: DriftResult, *, retrain: RetrainFn, promote: PromoteFn, data_path: Path) -> RetrainOutcome | None:
    """Start retraining when ``result`` calls for it; return what happened (``None`` when nothing was needed)."""
    reasons = result.trigger_reasons
    if not reasons:
        log.info("drift check %s: no drift, no performance drop; nothing to do", result.model_name)
        return None
    model = result.model_name
    log.warning("retraining %s: %s (drifted features: %s)", model, ", ".join(reasons),
                ", ".join(result.drifted_features) or "none")
    _state.update_state(data_path, lambda state: _state.bump(state, "retrain_triggers", model))
    challenger: str | None = None
    try:
        challenger = retrain(model, reasons)
        decision = promote(model)
    except Exception as exc:  # noqa: BLE001 - any failure of the run must reach an operator, not vanish
        log.exception("retraining %s failed", model)
        outcome, detail = GateOutcome.failed, f"{type(exc).__name__}: {exc}"
    else:
        outcome = GateOutcome.promoted if decision.promoted else GateOutcome.refused
        detail = decision.reason
        challenger = decision.challenger_version or challenger
    log.warning("promotion gate for %s challenger v%s: %s (%s)", model, challenger, outcome, detail)

    alert_id = None
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if outcome is not GateOutcome.promoted:
        alert_id = raise_operator_alert(
            data_path, model_name=model, at=at,
            message=(f"{model}: " + (f"the promotion gate refused drift-triggered challenger v{challenger} ({detail})"
                                     if outcome is GateOutcome.refused else
                                     f"drift-triggered retraining failed ({detail})")
                     + f"; the champion keeps serving on drifted data — review the drift report "
                     f"{result.report_html} and retrain or promote by hand"),
        )
    record = RetrainOutcome(model_name=model, reasons=reasons, challenger_version=challenger, outcome=outcome,
                            detail=detail, at=at, alert_id=alert_id)
    _state.append_line(data_path, _state.RETRAIN_LOG, {**record.to_dict(), "report_html": str(result.report_html)})
    _state.update_state(data_path, lambda state: _state.bump(state, "gate_decisions", model, outcome.value))
    return record


def raise_operator_alert(data_path: Path, *, model_name: str, message: str, at: str | None = None) -> str:
    """Record an alert for operators (file line + error log line + the ``operator_alerts`` counter)."""
    alert_id = uuid.uuid4().hex[:12]
    _state.append_line(data_path, _state.ALERTS_FILE, {
        "id": alert_id, "at": at or datetime.now(UTC).isoformat(timespec="seconds"),
        "model_name": model_name, "message": message,
    })
    _state.update_state(data_path, lambda state: _state.bump(state, "operator_alerts", model_name))
    log.error("OPERATOR ALERT %s: %s", alert_id, message)
    return alert_id
