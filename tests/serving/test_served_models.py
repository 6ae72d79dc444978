"""What `/admin/models` lists: every model the service serves (risk champion, recommender ranker, essay graders),
not only the models the champion watcher follows. In process: the same inventory the endpoint returns."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from serving_fixtures import ESSAY_PROMPT, synthetic_essay, train_essay_grader

from learnloop.settings import Settings


@pytest.fixture(scope="module")
def grader_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("served") / "var")
    train_essay_grader(settings, tmp_path_factory.mktemp("served-essays"))
    return settings


def _watcher(*, loaded: bool = True, error: str | None = None):
    schema = SimpleNamespace(inputs=tuple(SimpleNamespace(name=f"f{i}") for i in range(7)))
    models = {"risk": SimpleNamespace(version="3", schema=schema, loaded_at=time.time())} if loaded else {}
    return SimpleNamespace(model_names=("risk",), models=models, last_error={"risk": error} if error else {})


def test_every_served_model_is_listed_with_version_origin_inputs_and_status(grader_settings: Settings):
    from grading_nlp.api import grade_essay
    from recommender.api import reset_ranker_cache
    from serving._inventory import served_models
    from serving.data import ServedModelStatus

    reset_ranker_cache()
    broken = grader_settings.data_path / "grading" / "prompt-9"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "meta.json").write_text(json.dumps({"prompt": 9, "model_version": "essay-p9-full-20260101T000000"}))

    listed = {m.name: m for m in served_models(watcher=_watcher(), settings=grader_settings)}
    assert set(listed) == {"risk", "recommender", f"essay_grader_p{ESSAY_PROMPT}", "essay_grader_p9"}
    risk = listed["risk"]
    assert (risk.status, risk.version, risk.alias, risk.n_inputs, risk.route) == (
        ServedModelStatus.loaded, "3", "champion", 7, "/predict_risk")
    assert risk.source == "models:/risk@champion" and risk.loaded_at
    ranker = listed["recommender"]
    assert ranker.status is ServedModelStatus.not_loaded and ranker.route == "/recommend"
    assert ranker.alias == "champion" and "first treatment-arm" in ranker.detail

    grader = listed[f"essay_grader_p{ESSAY_PROMPT}"]
    meta = json.loads((grader_settings.data_path / "grading" / f"prompt-{ESSAY_PROMPT}" / "meta.json").read_text())
    assert grader.status is ServedModelStatus.not_loaded and grader.route == "/grade_essay"
    assert grader.version == meta["model_version"] and grader.alias is None
    assert grader.trained_on == meta["essays_path"] and grader.trained_on.endswith("essays.tsv")
    assert grader.trained_at == meta["trained_at"] and grader.source.endswith(f"prompt-{ESSAY_PROMPT}")
    assert grader.n_inputs == meta["n_inputs"] > 0
    missing = listed["essay_grader_p9"]
    assert missing.status is ServedModelStatus.unavailable and "learnloop train essays --prompt 9" in missing.detail
    assert missing.trained_at == "2026-01-01T00:00:00+00:00"  # from the version's stamp

    # Grading an essay loads its prompt's grader: now it is listed as loaded, same version and inputs.
    grade_essay(synthetic_essay(0.6, np.random.default_rng(1)), ESSAY_PROMPT, settings=grader_settings)
    after = {m.name: m for m in served_models(watcher=_watcher(), settings=grader_settings)}
    loaded = after[f"essay_grader_p{ESSAY_PROMPT}"]
    assert loaded.status is ServedModelStatus.loaded and loaded.detail is None
    assert (loaded.version, loaded.n_inputs) == (grader.version, grader.n_inputs)

    # A reload looks the ranker's champion up: none is registered here, so treatment falls back (and says so).
    resolved = {m.name: m for m in served_models(watcher=_watcher(), settings=grader_settings, resolve=True)}
    assert resolved["recommender"].status is ServedModelStatus.unavailable
    assert "learnloop train recommender" in resolved["recommender"].detail
    reset_ranker_cache()


def test_a_champion_that_did_not_load_is_degraded_or_unavailable(grader_settings: Settings):
    from serving._inventory import champion_models
    from serving.data import ServedModelStatus

    (kept,) = champion_models(_watcher(error="v4 needs ['x'], which FeatureService student_risk_v1 does not serve"))
    assert kept.status is ServedModelStatus.degraded and kept.version == "3" and "v4 needs" in kept.detail
    (none,) = champion_models(_watcher(loaded=False))
    assert none.status is ServedModelStatus.unavailable and none.version is None
    assert "learnloop promote risk" in none.detail


def test_the_response_keeps_versions_and_errors_by_name_for_every_model(grader_settings: Settings):
    from serving._inventory import served_models
    from serving._service import ModelsResponse

    answer = ModelsResponse.of(served_models(watcher=_watcher(loaded=False), settings=grader_settings))
    assert answer.versions["risk"] is None and answer.versions[f"essay_grader_p{ESSAY_PROMPT}"]
    assert "recommender" in answer.versions and set(answer.errors) >= {"risk"}
    assert [m.name for m in answer.models][:2] == ["risk", "recommender"]


def test_a_malformed_service_url_is_refused_with_what_to_pass():
    """`learnloop models served --url http://[::1` printed a traceback (httpx.InvalidURL is not an HTTPError)."""
    from learnloop.errors import InvalidInput
    from serving.api import served_models

    with pytest.raises(InvalidInput, match="not a valid URL"):
        served_models(base_url="http://[::1", timeout_s=1.0)


def test_a_registry_that_cannot_be_read_keeps_the_loaded_ranker_shown_as_degraded(grader_settings, monkeypatch):
    """A reload (or the 5-minute refresh) while the registry is down must not drop a working ranker to popularity."""
    import models.api
    from learnloop.errors import Unavailable
    from recommender import api as recommender_api
    from serving._inventory import ranker_model
    from serving.data import ServedModelStatus

    settings = grader_settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9/"})
    loaded = SimpleNamespace(version="4", n_inputs=40, loaded_at="2026-11-26T10:00:00+00:00")
    monkeypatch.setitem(recommender_api._RANKERS, settings.mlflow_uri, (0.0, loaded, None))

    def registry_down(*_args, **_kwargs):
        raise Unavailable("MLflow registry at http://127.0.0.1:9/ does not answer")

    monkeypatch.setattr(models.api, "load_champion_onnx", registry_down)
    assert recommender_api._champion_ranker(settings, refresh=True)[0] is loaded
    shown = ranker_model(settings)
    assert shown.status is ServedModelStatus.degraded and shown.version == "4"
    assert "kept v4" in shown.detail and "does not answer" in shown.detail
