"""The prediction log is written in the format monitoring reads (its own reader is the judge)."""

from __future__ import annotations

import math

import numpy as np

from learnloop.settings import Settings
from serving._plog import PredictionLog


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
