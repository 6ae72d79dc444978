"""Closing the loop: drift → retraining → challenger registered → gate decision logged (alert when refused)."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from conftest import FEATURES

from pipelines.monitoring.api import (
    GateDecision,
    GateOutcome,
    TriggerReason,
    check_drift,
    handle_drift,
    operator_alerts,
    retrain_history,
)


class Calls:
    def __init__(self, decision: GateDecision | None = None, fail: Exception | None = None) -> None:
        self.decision, self.fail = decision, fail
        self.retrained: list[tuple[str, list[TriggerReason]]] = []
        self.promoted: list[str] = []

    def retrain(self, model_name, reasons):
        self.retrained.append((model_name, reasons))
        if self.fail:
            raise self.fail
        return "7"

    def promote(self, model_name):
        self.promoted.append(model_name)
        return self.decision


@pytest.fixture(scope="module")
def drifted_result(tmp_path_factory, reference_window, drifted_window):
    from learnloop.settings import Settings

    scratch = Settings(data_dir=tmp_path_factory.mktemp("drift"))
    return check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                       settings=scratch, record=False)


def test_no_drift_triggers_nothing(settings, reference_window, same_distribution_window):
    calls = Calls(GateDecision(promoted=True, reason="ok"))
    result = check_drift("risk", reference_window, same_distribution_window, features=FEATURES,
                         prediction_column=None, settings=settings)

    assert handle_drift(result, retrain=calls.retrain, promote=calls.promote, settings=settings) is None
    assert calls.retrained == [] and calls.promoted == []
    assert retrain_history(settings=settings) == [] and operator_alerts(settings=settings) == []


def test_promoted_challenger_closes_the_loop_without_an_alert(settings, drifted_result):
    calls = Calls(GateDecision(promoted=True, reason="every gate check passed", challenger_version="7"))

    outcome = handle_drift(drifted_result, retrain=calls.retrain, promote=calls.promote, settings=settings)

    assert calls.retrained == [("risk", [TriggerReason.feature_drift])] and calls.promoted == ["risk"]
    assert outcome.outcome is GateOutcome.promoted and outcome.challenger_version == "7"
    assert outcome.alert_id is None and operator_alerts(settings=settings) == []
    assert retrain_history(settings=settings)[-1]["outcome"] == "promoted"


def test_refused_gate_alerts_operators(settings, drifted_result, caplog):
    calls = Calls(GateDecision(promoted=False, reason="calibration: ece=0.09 (bound 0.05)", challenger_version="7"))

    with caplog.at_level(logging.WARNING):
        outcome = handle_drift(drifted_result, retrain=calls.retrain, promote=calls.promote, settings=settings)

    assert outcome.outcome is GateOutcome.refused
    alerts = operator_alerts(settings=settings)
    assert [a["id"] for a in alerts] == [outcome.alert_id]
    assert "refused" in alerts[0]["message"] and "ece=0.09" in alerts[0]["message"]
    assert any("OPERATOR ALERT" in r.message for r in caplog.records)
    assert any("promotion gate for risk" in r.message for r in caplog.records)


def test_a_failing_retraining_run_alerts_operators(settings, drifted_result):
    calls = Calls(fail=RuntimeError("feature store unreachable"))

    outcome = handle_drift(drifted_result, retrain=calls.retrain, promote=calls.promote, settings=settings)

    assert outcome.outcome is GateOutcome.failed and calls.promoted == []
    assert "feature store unreachable" in operator_alerts(settings=settings)[0]["message"]


# --------------------------------------------------------------------------- the real registry and gate
def _train_and_register(frame: pd.DataFrame, held_out: pd.DataFrame, settings, *, eval_tag: str) -> str:
    """A small real training run: logistic regression → ONNX (parity asserted) → MLflow version as challenger."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs, model_frame
    from training.api import data_fingerprint, register_onnx_model

    schema = ModelSchema(inputs=infer_inputs(frame, FEATURES), feature_service="student_risk_v1")
    estimator = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=500))
    estimator.fit(model_frame(frame, schema.inputs), frame["label"])
    export = export_sklearn_classifier(estimator, held_out, schema)
    auc = roc_auc_score(held_out["label"], estimator.predict_proba(model_frame(held_out, schema.inputs))[:, 1])
    info = register_onnx_model(name="risk", export=export, metrics={"auc": auc, "ece": 0.01},
                               train_fingerprint=data_fingerprint(frame), eval_fingerprint=eval_tag,
                               settings=settings)
    return info.version


@pytest.mark.slow
def test_injected_drift_retrains_registers_a_challenger_and_logs_the_gate(
        settings, reference_window, same_distribution_window, drifted_window):
    from pipelines.monitoring import _loop
    from training.api import list_models, promote

    champion = _train_and_register(reference_window, same_distribution_window, settings, eval_tag="heldout-2013")
    assert promote("risk", settings=settings).champion_version == champion

    result = check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                         settings=settings)
    assert result.drift_detected

    def retrain(model_name, reasons):
        # Retrain on the drifted window, evaluated on different held-out rows: the gate must refuse to compare.
        return _train_and_register(drifted_window, drifted_window.sample(200, random_state=0), settings,
                                   eval_tag="heldout-drifted")

    outcome = handle_drift(result, retrain=retrain, promote=_loop.training_promote(settings), settings=settings)

    versions = {v.version: v.aliases for v in list_models("risk", settings=settings)}
    assert outcome.challenger_version != champion and "challenger" in versions[outcome.challenger_version]
    assert outcome.outcome is GateOutcome.refused and "same_held_out_data" in outcome.detail
    assert "champion" in versions[champion]  # the refused challenger did not replace it
    logged = retrain_history(settings=settings)
    assert [(e["outcome"], e["challenger_version"]) for e in logged] == [("refused", outcome.challenger_version)]
    assert operator_alerts(settings=settings)[0]["id"] == outcome.alert_id


def test_retrain_adapter_returns_the_version_train_risk_registered(settings, monkeypatch):
    from datetime import UTC, datetime
    from types import SimpleNamespace

    import training.api
    from learnloop.errors import Unavailable
    from pipelines.monitoring import _loop
    from training.api import ModelVersionInfo

    calls = []

    def fake_train_risk(*, settings):
        calls.append(settings)
        return SimpleNamespace(version=ModelVersionInfo("risk", "12", ["challenger"], "run", datetime.now(UTC)))

    monkeypatch.setattr(training.api, "train_risk", fake_train_risk)
    retrain = _loop.training_retrain(settings)

    assert retrain("risk", [TriggerReason.feature_drift]) == "12"
    assert calls == [settings]
    with pytest.raises(Unavailable, match="no automatic retraining for essay_grader"):
        retrain("essay_grader", [TriggerReason.performance_drop])
