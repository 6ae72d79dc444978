"""The prediction log is written in the format monitoring reads (its own reader is the judge)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from learnloop.settings import Settings
from serving._plog import PredictionLog


def _recommend_fixtures():
    # tests/recommender's helpers, loaded by path (test folders are not packages; conftest names collide).
    if "recommend_fixtures" not in sys.modules:
        path = Path(__file__).parents[1] / "recommender" / "recommend_fixtures.py"
        spec = importlib.util.spec_from_file_location("recommend_fixtures", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["recommend_fixtures"] = module
        spec.loader.exec_module(module)
    return sys.modules["recommend_fixtures"]


def test_monitoring_reads_what_serving_logs(settings: Settings):
    from pipelines.monitoring.api import read_prediction_log

    names = ["n_missed", "score_mean", "has_click_data"]
    log = PredictionLog(settings.data_path)
    for index, values in enumerate(([1.0, 0.5, 1.0], [2.0, math.nan, 0.0], [0.0, 1e-7, 1.0])):
        log.record(model_name="risk", model_version=str(index + 1), entity={"student_course": f"{index}:AAA-2013J"},
                   feature_names=names, features=np.array(values), output={"risk_score": 0.1 * (index + 1),
                                                                           "status": "scored"},
                   latency_ms=1.5 + index)
    log.flush()
    log.close()
    frame = read_prediction_log(model_name="risk", settings=settings)
    assert list(frame["model_version"]) == ["1", "2", "3"]
    assert np.allclose(frame["prediction"], [0.1, 0.2, 0.3])
    assert list(frame["latency_ms"]) == [1.5, 2.5, 3.5]
    assert list(frame["student_course"]) == ["0:AAA-2013J", "1:AAA-2013J", "2:AAA-2013J"]
    assert frame["n_missed"].tolist() == [1.0, 2.0, 0.0]
    assert math.isnan(frame["score_mean"][1]) and frame["score_mean"][2] == 1e-7
    assert log.dropped == 0 and log.written == 3


class _RecordingRanker:
    """The real ONNX ranker, keeping each matrix it was asked to score (what the log must carry)."""

    def __init__(self, ranker) -> None:
        self.ranker, self.version, self.scored = ranker, ranker.version, []

    def score(self, feats):
        self.scored.append(np.array(feats))
        return self.ranker.score(feats)


@pytest.fixture(scope="module")
def small_ranker():
    fixtures = _recommend_fixtures()
    return fixtures.fitted_ranker(fixtures.training_courses()[:2])[0]


def test_a_scored_list_logs_the_rankers_inputs_in_its_feature_order(settings: Settings, small_ranker):
    from pipelines.monitoring._prediction_log import read_logged_inputs
    from pipelines.monitoring.api import read_prediction_log
    from recommender._recommend import rankers, service
    from recommender.data import Variant

    fixtures = _recommend_fixtures()
    interactions, items = fixtures.platform_frames(fixtures.lockstep_course(n_learners=30, n_items=30, seed=7))
    ranker, day, user = _RecordingRanker(small_ranker), 45, "u3"
    cache = service.CourseCache()
    served = service.recommend(user_id=user, course_id="c1", interactions=interactions, items=items, day=day,
                               limit=5, variant=Variant.treatment, experiment="recommender-v1", ranker=ranker,
                               cache=cache)
    control = service.recommend(user_id=user, course_id="c1", interactions=interactions, items=items, day=day,
                                limit=5, variant=Variant.control, experiment="recommender-v1", cache=cache)
    log = PredictionLog(settings.data_path)
    log.record_recommendations(served, latency_ms=12.5)
    log.record_recommendations(control, latency_ms=3.0)  # popularity: nothing scored, no inputs
    log.flush()
    log.close()

    scored_line, control_line = (json.loads(line) for line in
                                 next((settings.data_path / "predictions" / "recommender").glob("*.jsonl"))
                                 .read_text().splitlines())
    assert "inputs" not in control_line and control_line["output"]["variant"] == "control"
    inputs = scored_line["inputs"]
    assert inputs["columns"] == list(rankers.FEATURES)  # the ranker's model-input order
    # The rows are the ranker's own rows of the sampled items (float32, exactly), with the scores it gave them.
    entry = service.course_entry(course_id="c1", interactions=interactions, items=items, day=day, cache=cache)
    column = {entry.item_ids[position]: i for i, position in enumerate(entry.course.items)}
    (matrix,) = ranker.scored
    scores = small_ranker.score(matrix)
    opened = set(interactions.loc[(interactions["user_id"] == user) & (interactions["day"] < day), "item_id"])
    candidates = len(items) - len(opened)
    assert inputs["candidates"] == candidates and len(inputs["items"]) == min(8, candidates) == 8
    assert not opened & set(inputs["items"]) and len(set(inputs["items"])) == 8
    rows = np.array([[np.nan if v is None else v for v in row] for row in inputs["rows"]], dtype=np.float32)
    expected = matrix[[column[item] for item in inputs["items"]]]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(inputs["scores"], scores[[column[item] for item in inputs["items"]]], rtol=1e-7)
    # Monitoring: one prediction per list (volume, latency), one row per sampled candidate for drift checks.
    lists = read_prediction_log(model_name="recommender", settings=settings)
    assert len(lists) == 2 and list(lists["latency_ms"]) == [12.5, 3.0]
    sampled = read_logged_inputs(settings.data_path, model_name="recommender")
    assert sampled.attrs["feature_columns"] == list(rankers.FEATURES) and sampled.attrs["lines"] == 1
    assert list(sampled["item_id"]) == inputs["items"] and set(sampled["user_id"]) == {user}
    np.testing.assert_array_equal(sampled[list(rankers.FEATURES)].to_numpy(dtype=np.float32), expected)


def test_recommender_lines_without_inputs_still_read(settings: Settings):
    """Lines written before serving logged the ranker's inputs (and control lists) read as they did."""
    from pipelines.monitoring import _windows
    from pipelines.monitoring._prediction_log import read_logged_inputs
    from pipelines.monitoring.api import read_prediction_log

    folder = settings.data_path / "predictions" / "recommender"
    folder.mkdir(parents=True)
    old = {"ts": "2026-11-25T17:40:19.123456+00:00", "model_name": "recommender", "model_version": "recommender-v1",
           "request_id": None, "entity": {"user_id": "u1", "course_id": "c1"},
           "output": {"variant": "treatment", "cold_start": False, "model_version": "3", "items": ["i1", "i2"]},
           "latency_ms": 20.1, "features": {}}
    (folder / "2026-11-25-1.jsonl").write_text(json.dumps(old) + "\n")

    frame = read_prediction_log(model_name="recommender", settings=settings)

    assert len(frame) == 1 and frame["user_id"][0] == "u1" and frame["latency_ms"][0] == 20.1
    assert read_logged_inputs(settings.data_path, model_name="recommender").empty
    with pytest.raises(_windows.NothingToCheck, match="hold no model inputs"):
        _windows.prediction_log_window("recommender", settings=settings, days=1, min_rows=1,
                                       now=frame["ts"][0].to_pydatetime() + __import__("datetime").timedelta(hours=1))
