"""Every registered risk version carries its fitted native sklearn model (what `mlflow models serve` is
benchmarked on): logged on the same run, its URI tagged on the version, same probabilities as the ONNX graph,
and it answers the exact request body `learnloop bench serve` sends."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.api import OnnxClassifier, model_frame
from serving._bench import native_request_body
from training._risk import RiskRecipe
from training.api import load_champion, promote, train_risk

SMALL = RiskRecipe(max_iter=40, min_samples_leaf=20)


@pytest.fixture(scope="module")
def native_frame(synthetic_risk_frame):
    return synthetic_risk_frame()


def test_registered_risk_version_logs_its_native_model_with_onnx_parity(registry_settings, native_frame):
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import invocations

    run = train_risk(frame=native_frame, recipe=SMALL)
    uri = run.version.tags.get("native_model_uri")
    assert uri and uri.startswith("models:/"), run.version.tags
    assert promote("risk").outcome.value == "promoted"
    champion = load_champion("risk")
    assert champion.version == run.version.version

    mlflow.set_tracking_uri(registry_settings.mlflow_uri)
    native = mlflow.pyfunc.load_model(uri)
    assert native.metadata.run_id == run.version.run_id  # the same run as the registered ONNX version
    held_out = native_frame[native_frame["code_presentation"] == "2014J"].sample(n=40, random_state=3)
    onnx_risk = OnnxClassifier(champion.onnx_bytes, champion.schema).predict_proba(held_out)
    native_risk = np.asarray(native.predict(model_frame(held_out, champion.schema.inputs)))[:, 1]
    np.testing.assert_allclose(native_risk, onnx_risk, atol=1e-5)
    assert np.ptp(onnx_risk) > 0.05  # a constant model would pass parity trivially

    # The scoring server's own request handling, on the bench's body (rows with absent clicks included).
    schema = native.metadata.get_input_schema()
    for index in range(5):
        row = model_frame(held_out.iloc[[index]], champion.schema.inputs).iloc[0].tolist()
        body = native_request_body(champion.schema.inputs, row)
        answer = invocations(body, "application/json", native, schema)
        assert answer.status == 200, answer.response
        predictions = json.loads(answer.response)["predictions"]
        assert abs(predictions[0][1] - onnx_risk[index]) <= 1e-5
