"""`learnloop drift check` on what a fresh demo leaves: a champion trained on ``student_risk_v2``, essay graders
saved for serving (not registered), models with nothing logged yet. Every outcome is recorded; a failure fails
the run."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from monitoring_fixtures import drift_app, fixtures_module
from typer.testing import CliRunner


def _log(settings, model_name: str, lines: list[dict]) -> None:
    folder = settings.data_path / "predictions" / model_name
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    with (folder / f"{now:%Y-%m-%d}-1.jsonl").open("a") as out:
        for i, line in enumerate(lines):
            out.write(json.dumps({"ts": (now - timedelta(minutes=len(lines) - i)).isoformat(),
                                  "model_name": model_name, **line}) + "\n")


def _essay_decisions(prompt: int, essays, *, model_version: str = "v") -> list[dict]:
    """What the platform logs when an instructor decides on an AI-graded essay (platform_api's grading review)."""
    return [{"model_version": model_version, "request_id": str(i), "entity": {"submission_id": str(i), "label": int(score)},
             "features": {"n_words": len(text.split()), "confidence": 0.8}, "output": int(score)}
            for i, (text, score) in enumerate(essays)]


@pytest.mark.slow
def test_a_v2_champion_is_checked_against_its_own_feature_service(registry_settings):
    """The demo's risk champion reads student_risk_v2: its reference must be built from v2, not the v1 default."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from features.api import feature_names
    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs, model_frame
    from pipelines.api import build_risk_training_set
    from training.api import promote, register_onnx_model

    settings = registry_settings
    feature_fixtures = fixtures_module("feature_fixtures", "features")
    feature_fixtures.build_store(settings, feature_fixtures.synthetic_oulad(n_students=20, seed=5))
    service = "student_risk_v2"
    frame = build_risk_training_set(weeks=[5, 10], service=service)
    names = feature_names(service)
    assert "due_weight" in names and "due_weight" not in feature_names("student_risk_v1")
    train = frame[frame["code_presentation"].isin(["2013J", "2014B"])]
    schema = ModelSchema(inputs=infer_inputs(train, names), feature_service=service, feature_service_version="2")
    estimator = make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(),
                              LogisticRegression(max_iter=500))
    estimator.fit(model_frame(train, schema.inputs), train["label"])
    register_onnx_model(name="risk", export=export_sklearn_classifier(estimator, train.head(50), schema),
                        metrics={"auc": 0.7, "ece": 0.01}, params={"train_presentations": "2013J,2014B"},
                        train_fingerprint="train", eval_fingerprint="eval", settings=settings)
    promote("risk", force_reason="monitoring test", settings=settings)
    served = frame[frame["code_presentation"] == "2014J"].head(40)
    _log(settings, "risk", [
        {"model_version": "1", "entity": {"student_course": row["student_course"]},
         "features": {name: None if math.isnan(row[name]) else float(row[name]) for name in names},
         "output": {"risk_score": 0.4, "status": "scored"}} for _, row in served.iterrows()])

    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "--no-retrain", "--min-rows", "1"])  # every served model

    assert out.exit_code == 0, out.output
    risk = json.loads(out.stdout)["models"]["risk"]
    assert risk.get("status") == "checked", risk
    assert risk["windows"]["reference"] == f"risk v1 training data ({service})"
    assert risk["n_current"] == len(served) and risk["n_reference"] > len(served)
    # A v2-only input was compared (it is in Evidently's report), not reported missing.
    assert "due_weight" not in risk["skipped_features"] and "due_weight" in Path(risk["report_json"]).read_text()

    # Comparing presentations (the operator's way to see a drift report before any traffic) checks the models
    # presentation rows are inputs of; an essay grader saved for serving has none. It was checked too, failed
    # ("no registered model 'essay_grader_p1'; train it first (`learnloop train essay_grader_p1`)", a command that
    # does not exist) and failed the run.
    from grading_nlp.api import train_essay_models

    grading_fixtures = fixtures_module("grading_fixtures", "grading_nlp")
    essays = grading_fixtures.write_tsv(grading_fixtures.synthetic_essays({1: 40}, seed=3),
                                        settings.data_path / "essays.tsv")
    train_essay_models(essays, prompts=[1], settings=settings)
    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "--reference-presentations", "2013J",
                                      "--current-presentations", "2014J"])

    assert out.exit_code == 0, out.output
    compared = json.loads(out.stdout)["models"]
    assert list(compared) == ["risk"] and compared["risk"]["status"] == "checked", compared


def test_an_essay_grader_is_checked_against_the_essays_it_learned_from(settings, tmp_path):
    from grading_nlp.api import train_essay_models, trained_essay_models

    grading_fixtures = fixtures_module("grading_fixtures", "grading_nlp")
    essays = grading_fixtures.synthetic_essays({1: 60}, seed=5)
    path = grading_fixtures.write_tsv(essays, tmp_path / "essays.tsv")
    train_essay_models(path, prompts=[1], settings=settings)
    assert trained_essay_models(settings=settings)[0]["essays_path"] == str(path.resolve())
    grader_version = trained_essay_models(settings=settings)[0]["model_version"]
    earlier = _essay_decisions(1, [("an essay the previous grader suggested a grade for", 2)] * 5,
                               model_version="essay-p1-full-20250101T000000")
    for i, line in enumerate(earlier):
        line["entity"]["submission_id"] = line["request_id"] = f"earlier-{i}"
    _log(settings, "essay_grader_p1", earlier + _essay_decisions(
        1, zip(essays["essay"][:30], essays["domain1_score"][:30], strict=True), model_version=grader_version))

    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "--no-retrain", "--min-rows", "1"])  # finds the saved grader

    assert out.exit_code == 0, out.output
    grader = json.loads(out.stdout)["models"].get("essay_grader_p1", {})
    assert grader.get("status") == "checked", grader
    assert grader["n_reference"] == 60 and grader["n_current"] == 30
    assert grader["performance"]["metric"] == "qwk" and grader["performance"]["reference"] is not None
    assert "training essays" in grader["windows"]["reference"]
    # The previous grader's decisions are not this grader's answers: left out of the current window.
    assert f"answers of v{grader_version} only (30 of 35)" in grader["windows"]["current"]


def test_a_failed_check_is_recorded_shown_and_fails_the_run(settings):
    # essay_grader_p1: decisions logged but no grader saved (reference cannot be built) → failed;
    # essay_grader_p2: nothing logged yet → skipped, which is not a failure.
    from pipelines.monitoring.api import operator_router

    _log(settings, "essay_grader_p1", _essay_decisions(1, [("a short essay about cars", 3)] * 5))

    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "--min-rows", "1",
                                                   "-m", "essay_grader_p1", "-m", "essay_grader_p2"])

    assert out.exit_code == 1, out.output
    models = json.loads(out.stdout)["models"]
    assert models["essay_grader_p1"]["status"] == "failed"
    assert "no essay grader is saved for prompt 1" in models["essay_grader_p1"]["error"]
    assert models["essay_grader_p2"]["status"] == "skipped"
    assert "no predictions of essay_grader_p2" in models["essay_grader_p2"]["reason"]

    status = CliRunner().invoke(drift_app(), ["drift", "status", "--json"])
    assert status.exit_code == 0, status.output
    last = {name: row["last_check"] for name, row in json.loads(status.stdout)["models"].items()}
    assert last["essay_grader_p1"]["outcome"] == "failed" and last["essay_grader_p1"]["at"]
    assert "no essay grader is saved" in last["essay_grader_p1"]["reason"]
    assert last["essay_grader_p2"]["outcome"] == "skipped"

    app = FastAPI()
    app.include_router(operator_router(settings=settings))
    with TestClient(app) as client:
        html = client.get("/operator").text
        metrics = client.get("/operator/metrics").text
    row = html[html.index('data-model="essay_grader_p1"'):html.index('data-model="essay_grader_p2"')]
    assert "check failed" in row and "no essay grader is saved for prompt 1" in row and "never checked" not in row
    assert 'learnloop_drift_check_failed{model="essay_grader_p1"} 1.0' in metrics
    assert 'learnloop_drift_check_failed{model="essay_grader_p2"} 0.0' in metrics
    assert 'learnloop_drift_check_failures_total{model="essay_grader_p1"} 1.0' in metrics


def test_the_current_window_holds_only_the_checked_versions_answers():
    """The reference is scored by the champion: the days after a promotion, the previous champion's answers in the
    window showed as prediction drift and retrained for nothing."""
    import numpy as np
    import pandas as pd

    from pipelines.monitoring._windows import NothingToCheck, Window, answered_by

    risk = pd.DataFrame({"model_version": ["3"] * 40 + ["4"] * 60, "x": range(100), "prediction": 0.5})
    narrowed = answered_by(Window(risk, ["x"], "prediction log"), "4", min_rows=50)
    assert set(narrowed.frame["model_version"]) == {"4"} and len(narrowed.frame) == 60
    assert "answers of v4 only (60 of 100)" in narrowed.description
    with pytest.raises(NothingToCheck, match="only 40 of the 100 logged answers in the window are by v3"):
        answered_by(Window(risk, ["x"], "prediction log"), "3", min_rows=50)
    assert answered_by(Window(risk, ["x"], "p"), None).frame is risk  # no version known: as logged

    # The recommender's sampled inputs: 8 rows per list; the ranker's version is `scored_by`, lists are `line`s.
    lists = pd.DataFrame({"line": np.repeat(np.arange(10), 8), "scored_by": np.repeat(["1"] * 4 + ["2"] * 6, 8),
                          "model_version": "recommender-v1", "x": 0.0})
    ranked = answered_by(Window(lists, ["x"], "inputs"), "2", min_rows=5)
    assert len(ranked.frame) == 48 and "(6 of 10)" in ranked.description
    with pytest.raises(NothingToCheck, match="only 4 of the 10"):
        answered_by(Window(lists, ["x"], "inputs"), "1", min_rows=5)
