"""ONNX export of sklearn pipelines: preprocessing, HistGradientBoosting (protobuf-7 fix), Platt calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from learnloop.errors import InvalidInput
from models.api import (
    InputKind,
    ModelSchema,
    OnnxClassifier,
    PlattCalibratedClassifier,
    export_sklearn_classifier,
    fit_platt,
    infer_inputs,
    model_frame,
)


@pytest.fixture(scope="module")
def mixed_frame():
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({
        "score_mean": rng.normal(60, 15, n),
        "n_missed": rng.integers(0, 6, n),
        "band": rng.choice(["0-10%", "10-20", None], n),
    })
    frame.loc[::4, "score_mean"] = np.nan  # absent stays absent: the trees' missing branch must survive export
    labels = ((frame["n_missed"] - frame["score_mean"].fillna(50) / 20 + (frame["band"] == "0-10%")
               + rng.normal(0, 1, n)) > -1.5).astype(int)
    return frame, labels


def _pipeline(frame, inputs, learner):
    numeric = [item.name for item in inputs if item.kind is InputKind.numeric]
    categorical = [item.name for item in inputs if item.kind is InputKind.categorical]
    pre = ColumnTransformer([("num", "passthrough", numeric),
                             ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)])
    return Pipeline([("pre", pre), ("model", learner)])


def test_hist_gradient_boosting_with_calibration_exports_with_parity(mixed_frame):
    frame, labels = mixed_frame
    inputs = infer_inputs(frame, ["score_mean", "n_missed", "band"])
    assert [item.kind for item in inputs] == [InputKind.numeric, InputKind.numeric, InputKind.categorical]
    train, held_out = frame.iloc[:2000], frame.iloc[2000:]
    base = _pipeline(frame, inputs, HistGradientBoostingClassifier(max_iter=60)).fit(
        model_frame(train, inputs), labels.iloc[:2000])
    slope, intercept = fit_platt(base.predict_proba(model_frame(held_out, inputs))[:, 1], labels.iloc[2000:])
    calibrated = _pipeline(frame, inputs, PlattCalibratedClassifier(HistGradientBoostingClassifier(max_iter=60),
                                                                     slope, intercept))
    calibrated.fit(model_frame(train, inputs), labels.iloc[:2000])

    export = export_sklearn_classifier(calibrated, held_out, ModelSchema(inputs=inputs))
    assert export.parity_max_abs_diff <= 1e-5 and export.parity_rows == len(held_out)
    onnx_scores = OnnxClassifier(export.onnx_bytes, export.schema).predict_proba(held_out)
    native = calibrated.predict_proba(model_frame(held_out, inputs))[:, 1]
    np.testing.assert_allclose(onnx_scores, native, atol=1e-5)
    # Platt scaling with a positive slope never reorders rows.
    raw = base.predict_proba(model_frame(held_out, inputs))[:, 1]
    assert slope > 0
    assert np.all(np.diff(native[np.argsort(raw, kind="stable")]) >= -1e-12)
    # Unknown categories and absent values at serving time are handled inside the graph.
    odd = held_out.head(3).assign(band=["never-seen", None, "10-20"], score_mean=[np.nan, 50.0, np.nan])
    assert np.all(np.isfinite(OnnxClassifier(export.onnx_bytes, export.schema).predict_proba(odd)))


def test_export_refuses_a_graph_that_disagrees_with_the_native_model(mixed_frame):
    frame, labels = mixed_frame
    inputs = infer_inputs(frame, ["score_mean", "n_missed"])
    model = HistGradientBoostingClassifier(max_iter=30).fit(model_frame(frame, inputs), labels)
    with pytest.raises(InvalidInput, match="parity"):
        export_sklearn_classifier(model, frame, ModelSchema(inputs=inputs), tolerance=0.0)
    # With the agreed tolerance the same model passes: the check is about the numbers, not the model type.
    assert export_sklearn_classifier(model, frame, ModelSchema(inputs=inputs)).parity_max_abs_diff <= 1e-5


def test_split_between_adjacent_float32_values_keeps_parity():
    # Two adjacent float32 values whose float64 midpoint rounds *up* to the larger one in float32: without
    # snapping thresholds down, the ONNX tree sends the larger value left and the model flips its answer.
    low = np.nextafter(np.float32(1.0), np.float32(2.0))
    high = np.nextafter(low, np.float32(2.0))
    assert np.float32((np.float64(low) + np.float64(high)) / 2) == high
    frame = pd.DataFrame({"course_progress": np.repeat(np.array([low, high], dtype=np.float32), 200)})
    labels = np.repeat([0, 1], 200)
    inputs = infer_inputs(frame, ["course_progress"])
    model = _pipeline(frame, inputs, HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=5))
    model.fit(model_frame(frame, inputs), labels)
    native = model.predict_proba(model_frame(frame, inputs))[:, 1]
    assert native[-1] - native[0] > 0.5  # the model did learn the split
    exported = export_sklearn_classifier(model, frame, ModelSchema(inputs=inputs))
    onnx = OnnxClassifier(exported.onnx_bytes, exported.schema).predict_proba_matrix(frame)[:, 1]
    assert np.max(np.abs(onnx - native)) <= 1e-5


def test_calibrated_logistic_regression_exports_with_parity_at_extreme_probabilities():
    """A linear model is computed in float64 inside the graph (inputs stay float32): with confident base
    probabilities (1 - p ~ 1e-5) and a Platt slope below 1, float32 cost ~1e-4 of calibrated probability."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(11)
    n = 4000
    frame = pd.DataFrame({"clicks_7d": rng.gamma(0.5, 400, n), "n_missed": rng.integers(0, 8, n).astype(float)})
    frame["clicks_28d"] = frame["clicks_7d"] * 3.5 + rng.gamma(0.5, 100, n)  # collinear click windows
    frame.loc[::5, "clicks_28d"] = np.nan
    labels = (2.5 * frame["n_missed"] - frame["clicks_7d"] / 150 + rng.normal(0, 1, n) > 6).astype(int)
    inputs = infer_inputs(frame, ["clicks_7d", "clicks_28d", "n_missed"])
    columns = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer(strategy="median")),
                                                   ("scale", StandardScaler())]), ["clicks_7d", "clicks_28d",
                                                                                    "n_missed"])])
    model = Pipeline([("columns", columns),
                      ("model", PlattCalibratedClassifier(LogisticRegression(C=100.0), slope=0.45, intercept=-2.0))])
    model.fit(model_frame(frame, inputs), labels)
    base = model.named_steps["model"].estimator_.predict_proba(
        model.named_steps["columns"].transform(model_frame(frame, inputs)))[:, 1]
    assert (1 - base).min() < 1e-4  # the regime where float32 probabilities lose the tail

    export = export_sklearn_classifier(model, frame, ModelSchema(inputs=inputs))

    assert export.parity_max_abs_diff <= 1e-6
    onnx = OnnxClassifier(export.onnx_bytes, export.schema)
    served_types = {item.name: item.type for item in onnx._session.get_inputs()}
    assert set(served_types.values()) == {"tensor(float)"}  # serving feeds float32 to every model
