"""The recommender watched like the other models: its trainer logs a sample of the ranker's training rows with the
model, serving logs the ranker's inputs for a sample of each scored list's candidates, and `learnloop drift check`
compares the two with Evidently (report, status, operator page, retraining)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monitoring_fixtures import drift_app, fixtures_module
from typer.testing import CliRunner

recommend_fixtures = fixtures_module("recommend_fixtures", "recommender")


def _serve(settings, course, *, recommend, keep_share: float = 1.0, every_learner: int = 3) -> tuple[int, int]:
    """Serve lists of ``course`` at every other training cutoff to every ``every_learner``-th learner through
    ``recommend`` (a ``recommend(**request) -> RecommendationList``) and the serving prediction log; returns how many
    lists the ranker scored and how many candidate rows they logged (8 each, fewer where fewer were left)."""
    from recommender._recommend import learned
    from serving._plog import PredictionLog

    interactions, items = recommend_fixtures.platform_frames(course, keep_share=keep_share)
    log = PredictionLog(settings.data_path)
    scored = rows = 0
    try:
        for day in learned.training_cutoffs(course)[::2]:
            for user in sorted(set(interactions["user_id"]))[::every_learner]:
                served = recommend(user_id=user, course_id=course.course_id, interactions=interactions, items=items,
                                   day=day)
                log.record_recommendations(served, latency_ms=5.0)
                if served.ranker_inputs is not None:
                    scored, rows = scored + 1, rows + len(served.ranker_inputs.item_ids)
        log.flush()
    finally:
        log.close()
    return scored, rows


def _treatment(ranker):
    """What /recommend runs for a treatment-arm learner, with ``ranker`` as the champion."""
    from recommender._recommend import service
    from recommender.data import Variant

    def recommend(**request):
        return service.recommend(**request, limit=10, variant=Variant.treatment, experiment="recommender-v1",
                                 ranker=ranker)

    return recommend


@pytest.fixture(scope="module")
def trained():
    """(ONNX ranker, its export) fitted on three small presentations, without the registry."""
    ranker, _, _, export = recommend_fixtures.fitted_ranker(recommend_fixtures.training_courses())
    return ranker, export


@pytest.mark.slow  # MLflow registry, ONNX export, two Evidently reports over 40 features: ~30-45 s
def test_a_trained_recommender_is_checked_against_its_training_sample_and_drifts_when_learners_change(
        registry_settings):
    """Trained and registered as `learnloop train recommender` does, served in process as /recommend does: a new
    presentation like the training ones is checked without drift (against the whole training sample); a course it
    learned from, now with learners who open a third as much, is flagged (against that course's own rows), with the
    reasons that start retraining."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from threadpoolctl import threadpool_limits

    from pipelines.monitoring.api import operator_router
    from recommender import api
    from recommender._recommend import learned, rankers
    from recommender._recommend.service import COURSE_CACHE
    from recommender._recommend.train import train_ranker
    from training.api import drift_reference, list_models

    settings = registry_settings
    with threadpool_limits(limits=1):
        report = train_ranker(recommend_fixtures.training_courses(), settings=settings)
    assert report["promotion"] == "promoted", report
    (champion,) = list_models("recommender", settings=settings)
    assert champion.tags["drift_reference"] == "drift_reference/reference.parquet"
    reference = drift_reference(champion, settings=settings)
    assert list(reference.columns[:len(rankers.FEATURES)]) == list(rankers.FEATURES)
    assert len(reference) == learned.REFERENCE_ROWS == 10_000
    assert set(reference["course_id"]) == {"X-2013B", "X-2013J", "X-2014J"}
    api.reset_ranker_cache()

    def serve(course_id: str, *, seed: int, keep_share: float) -> tuple[int, int]:
        for path in (settings.data_path / "predictions").rglob("*.jsonl"):
            path.unlink()  # each window is its own week of traffic
        COURSE_CACHE.clear()
        course = recommend_fixtures.lockstep_course(n_learners=40, n_items=30, seed=seed, course_id=course_id)
        return _serve(settings, course, keep_share=keep_share, recommend=lambda **request: api.recommend(
            **request, treatment_share=1.0, settings=settings))

    scored, rows = serve("X-2015B", seed=4, keep_share=1.0)
    assert scored >= 50

    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "--no-retrain"])  # every served model

    assert out.exit_code == 0, out.output
    checked = json.loads(out.stdout)["models"]["recommender"]
    assert checked["status"] == "checked", checked
    assert checked["windows"]["reference"] == "recommender v1 training sample (10,000 rows logged with the model)"
    assert f"{scored:,} scored lists" in checked["windows"]["current"]
    assert checked["n_reference"] == 10_000 and checked["n_current"] == rows
    assert checked["drift_detected"] is False and checked["share"] < 0.4 and checked["trigger_reasons"] == []
    assert checked["prediction_drift"] is not None  # the ranker's scores are compared too
    # Evidently's report (JSON for machines, HTML for people) tests the ranker's features by name.
    tested = {t["metric_config"]["params"].get("column") for t in json.loads(Path(checked["report_json"]).read_text())
              ["tests"]}
    assert set(rankers.FEATURES) - set(checked["skipped_features"]) <= tested and "prediction" in tested
    assert "trend_7d" in Path(checked["report_html"]).read_text()
    # Recorded for `drift status` and the operator page like every model.
    status = json.loads(CliRunner().invoke(drift_app(), ["drift", "status", "--json"]).stdout)["models"]["recommender"]
    assert status["last_check"]["outcome"] == "checked" and status["report_html"] == checked["report_html"]
    app = FastAPI()
    app.include_router(operator_router(settings=settings))
    with TestClient(app) as client:
        html = client.get("/operator").text
    assert 'data-model="recommender"' in html and Path(checked["report_html"]).name in html

    serve("X-2014J", seed=3, keep_share=0.3)  # a course it learned from, whose learners now open a third as much

    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "--no-retrain", "-m", "recommender"])

    assert out.exit_code == 0, out.output
    drifted = json.loads(out.stdout)["models"]["recommender"]
    assert drifted["windows"]["reference"].endswith("matched to the current window's courses (100% of its rows "
                                                    "from courses the model learned from)")
    assert drifted["drift_detected"] is True and drifted["share"] >= 0.6, drifted
    assert {"learner_items", "penetration", "trend_7d"} <= set(drifted["drifted_features"])
    assert "feature_drift" in drifted["trigger_reasons"]  # what makes `drift check` retrain (without --no-retrain)


def test_each_course_is_compared_with_its_own_training_rows_and_a_new_course_with_the_training_mix():
    import numpy as np
    import pandas as pd

    from pipelines.monitoring import _windows

    rng = np.random.default_rng(0)
    # Course A: 9,000 rows of the mix; course B: 300 rows drawn for it, standing for 1,000 (weight 1000/300).
    reference = pd.DataFrame({"x": np.r_[rng.normal(0, 1, 9000), rng.normal(5, 1, 300)],
                              "course_id": ["A"] * 9000 + ["B"] * 300,
                              "sample_weight": np.r_[np.ones(9000), np.full(300, 1000 / 300)]})
    window = _windows.Window(reference, ["x"], "sample", match_on="course_id")

    def matched(courses: list[str]) -> pd.DataFrame:
        current = _windows.Window(pd.DataFrame({"course_id": courses}), ["x"], "log")
        return _windows.match_course_mix(window, current).frame

    only_b = matched(["B"] * 10)
    assert len(only_b) == len(reference) and set(only_b["course_id"]) == {"B"}  # B's own rows, not the mix
    half = matched(["A", "B"])
    assert (half["course_id"] == "B").mean() == pytest.approx(0.5, abs=0.01)
    new_course = matched(["C"] * 10)  # never learned from: the training mix, B at its weight (1,000 of 10,000)
    assert (new_course["course_id"] == "B").mean() == pytest.approx(0.1, abs=0.02)
    assert "matched to the current window's courses (0%" in _windows.match_course_mix(
        window, _windows.Window(pd.DataFrame({"course_id": ["C"]}), ["x"], "log")).description


def test_a_champion_registered_without_a_reference_is_skipped_saying_to_retrain(registry_settings, trained):
    """A recommender trained before its trainer logged the reference sample: skipped with the reason, not failed."""
    from training.api import promote, register_onnx_model

    settings = registry_settings
    ranker, export = trained
    register_onnx_model(name="recommender", export=export, metrics={"ndcg_at_10": 0.6, "ece": 0.05},
                        train_fingerprint="old", eval_fingerprint="old", settings=settings)  # no reference_sample
    promote("recommender", force_reason="a champion from before drift references", settings=settings)
    course = recommend_fixtures.lockstep_course(n_learners=40, n_items=30, seed=6, course_id="X-2015J")
    assert _serve(settings, course, recommend=_treatment(ranker))[0] >= 50

    out = CliRunner().invoke(drift_app(), ["drift", "check", "--json", "-m", "recommender"])

    assert out.exit_code == 0, out.output  # skipped is not a failure
    row = json.loads(out.stdout)["models"]["recommender"]
    assert row["status"] == "skipped", row
    assert "recommender v1 (the champion) was trained before" in row["reason"]
    assert "retrain it (`learnloop train recommender`" in row["reason"]
    status = json.loads(CliRunner().invoke(drift_app(), ["drift", "status", "--json"]).stdout)["models"]["recommender"]
    assert status["last_check"]["outcome"] == "skipped" and "retrain" in status["last_check"]["reason"]


def test_too_few_scored_lists_are_skipped_with_the_count(settings, trained):
    from pipelines.monitoring import _windows

    ranker, _ = trained
    course = recommend_fixtures.lockstep_course(n_learners=12, n_items=30, seed=6, course_id="X-small")
    scored, _ = _serve(settings, course, recommend=_treatment(ranker), every_learner=4)

    with pytest.raises(_windows.NothingToCheck, match=f"only {scored} of the \\d+ predictions of recommender .* carry"):
        _windows.prediction_log_window("recommender", settings=settings, days=1, min_rows=scored + 1)


def test_drift_retrains_the_recommender_with_the_platforms_own_courses(settings, monkeypatch):
    """The trigger's retrain step for the recommender is `learnloop train recommender` without its gate (the trigger
    runs the gate next), with `--platform` when there is a platform database to read."""
    import recommender.cli
    from pipelines.monitoring import _loop

    calls = []

    def fake_train_and_promote(**kwargs):
        calls.append(kwargs)
        return {"version": str(len(calls) + 6)}

    monkeypatch.setattr(recommender.cli, "train_and_promote", fake_train_and_promote)
    retrain = _loop.training_retrain(settings)

    assert retrain("recommender", []) == "7"  # no platform database in this data dir: OULAD only
    (settings.data_path / "learnloop.db").touch()
    assert retrain("recommender", []) == "8"
    assert [(c["platform"], c["register"], c["promote"], c["settings"]) for c in calls] == [
        (False, True, False, settings), (True, True, False, settings)]
