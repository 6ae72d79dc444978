"""The recommender watched like the other models: its trainer logs a sample of the ranker's training rows with the
model, serving logs the ranker's inputs for a sample of each scored list's candidates, and `learnloop drift check`
compares the two with Evidently (report, status, operator page, retraining)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipelines.monitoring import cli

TESTS = Path(__file__).parents[1]


def _fixtures(name: str, folder: str):
    # Loaded by path under their own names (test folders are not packages; conftest names collide).
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


recommend_fixtures = _fixtures("recommend_fixtures", "recommender")


def _app() -> typer.Typer:
    groups = {"drift": typer.Typer()}
    root = typer.Typer()
    cli.register(groups=groups, root=root)
    root.add_typer(groups["drift"], name="drift")
    return root


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


@pytest.mark.slow  # MLflow registry, ONNX export, two Evidently reports over 40 features: ~45 s at load 7
def test_a_trained_recommender_is_checked_against_its_training_sample_and_drifts_when_learners_change(
        registry_settings):
    """Trained and registered as `learnloop train recommender` does, served in process as /recommend does: a new
    presentation like the training ones is checked without drift; the same course with learners who open a third
    as much is flagged, with the reasons that start retraining."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from threadpoolctl import threadpool_limits

    from pipelines.monitoring.api import operator_router
    from recommender import api
    from recommender._recommend import rankers
    from recommender._recommend.train import train_ranker
    from training.api import drift_reference, list_models

    settings = registry_settings
    with threadpool_limits(limits=1):
        report = train_ranker(recommend_fixtures.training_courses(), settings=settings)
    assert report["promotion"] == "promoted", report
    (champion,) = list_models("recommender", settings=settings)
    assert champion.tags["drift_reference"] == "drift_reference/reference.parquet"
    reference = drift_reference(champion, settings=settings)
    assert list(reference.columns[:len(rankers.FEATURES)]) == list(rankers.FEATURES) and len(reference) == 5000
    api.reset_ranker_cache()

    def serve(course_id: str, *, keep_share: float) -> tuple[int, int]:
        for path in (settings.data_path / "predictions").rglob("*.jsonl"):
            path.unlink()  # each window is its own week of traffic
        course = recommend_fixtures.lockstep_course(n_learners=40, n_items=30, seed=4, course_id=course_id)
        return _serve(settings, course, keep_share=keep_share, recommend=lambda **request: api.recommend(
            **request, treatment_share=1.0, settings=settings))

    scored, rows = serve("X-2015B", keep_share=1.0)
    assert scored >= 50

    out = CliRunner().invoke(_app(), ["drift", "check", "--json", "--no-retrain"])  # every served model

    assert out.exit_code == 0, out.output
    checked = json.loads(out.stdout)["models"]["recommender"]
    assert checked["status"] == "checked", checked
    assert checked["windows"]["reference"] == "recommender v1 training sample (5,000 rows logged with the model)"
    assert f"{scored:,} scored lists" in checked["windows"]["current"]
    assert checked["n_reference"] == 5000 and checked["n_current"] == rows
    assert checked["drift_detected"] is False and checked["share"] < 0.4 and checked["trigger_reasons"] == []
    assert checked["prediction_drift"] is not None  # the ranker's scores are compared too
    # Evidently's report (JSON for machines, HTML for people) tests the ranker's features by name.
    tested = {t["metric_config"]["params"].get("column") for t in json.loads(Path(checked["report_json"]).read_text())
              ["tests"]}
    assert set(rankers.FEATURES) - set(checked["skipped_features"]) <= tested and "prediction" in tested
    assert "trend_7d" in Path(checked["report_html"]).read_text()
    # Recorded for `drift status` and the operator page like every model.
    status = json.loads(CliRunner().invoke(_app(), ["drift", "status", "--json"]).stdout)["models"]["recommender"]
    assert status["last_check"]["outcome"] == "checked" and status["report_html"] == checked["report_html"]
    app = FastAPI()
    app.include_router(operator_router(settings=settings))
    with TestClient(app) as client:
        html = client.get("/operator").text
    assert 'data-model="recommender"' in html and Path(checked["report_html"]).name in html

    serve("X-2015J", keep_share=0.3)  # the next presentation's learners open a third as much

    out = CliRunner().invoke(_app(), ["drift", "check", "--json", "--no-retrain", "-m", "recommender"])

    assert out.exit_code == 0, out.output
    drifted = json.loads(out.stdout)["models"]["recommender"]
    assert drifted["drift_detected"] is True and drifted["share"] >= 0.6, drifted
    assert {"learner_items", "penetration", "trend_7d"} <= set(drifted["drifted_features"])
    assert "feature_drift" in drifted["trigger_reasons"]  # what makes `drift check` retrain (without --no-retrain)


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

    out = CliRunner().invoke(_app(), ["drift", "check", "--json", "-m", "recommender"])

    assert out.exit_code == 0, out.output  # skipped is not a failure
    row = json.loads(out.stdout)["models"]["recommender"]
    assert row["status"] == "skipped", row
    assert "recommender v1 (the champion) was trained before" in row["reason"]
    assert "retrain it (`learnloop train recommender`" in row["reason"]
    status = json.loads(CliRunner().invoke(_app(), ["drift", "status", "--json"]).stdout)["models"]["recommender"]
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
