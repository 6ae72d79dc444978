"""Platt scaling on a base classifier's logit, as a scikit-learn estimator with its own ONNX converter.

skl2onnx's ``CalibratedClassifierCV`` converter does not match scikit-learn 1.9 for gradient boosting (it
calibrates ``predict_proba`` while scikit-learn calibrates ``decision_function``: 0.02 probability gap measured),
so calibration is a small explicit wrapper whose graph we write ourselves: ``p = sigmoid(slope·logit(p_base) +
intercept)``. With ``slope > 0`` it keeps the base model's ranking (AUC, monotonic constraints) unchanged.
"""

from __future__ import annotations

import threading

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression

from learnloop.errors import InvalidInput

_EPS = 1e-6  # probabilities are clipped before the logit so float32 and float64 agree at the extremes
_register_lock = threading.Lock()
_registered = False


def _logit(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, _EPS, 1 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def fit_platt(base_probability: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of Platt scaling fitted on out-of-sample base probabilities of the positive class."""
    logits = _logit(np.asarray(base_probability, dtype=np.float64)).reshape(-1, 1)
    scaler = LogisticRegression(C=1e6, max_iter=1000).fit(logits, np.asarray(labels))
    slope, intercept = float(scaler.coef_[0, 0]), float(scaler.intercept_[0])
    if slope <= 0:
        raise InvalidInput(f"Platt slope {slope:.3g} ≤ 0: the base model ranks held-out rows backwards; do not calibrate it")
    return slope, intercept


def has_linear_logit(estimator) -> bool:
    """Whether ``estimator``'s logit is a linear function of its inputs, computed here (and in its ONNX graph) in
    float64: Platt reads that logit exactly, and the export runs the graph in double (see
    ``models._sklearn_onnx``). One predicate for both, so a new linear learner cannot be exact in one place only."""
    return isinstance(estimator, LogisticRegression)


class PlattCalibratedClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier whose probabilities are Platt-scaled on the logit of ``estimator``'s probabilities.

    ``fit`` fits a clone of ``estimator`` and keeps the given ``slope``/``intercept`` (fit them with
    :func:`fit_platt` on out-of-sample predictions, e.g. cross-fitted by presentation).
    """

    def __init__(self, estimator, slope: float = 1.0, intercept: float = 0.0) -> None:
        self.estimator = estimator
        self.slope = slope
        self.intercept = intercept

    def fit(self, X, y, **fit_params):
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        self.classes_ = self.estimator_.classes_
        if len(self.classes_) != 2:
            raise InvalidInput("Platt calibration is for binary classifiers")
        return self

    def _base_logit(self, X) -> np.ndarray:
        if has_linear_logit(self.estimator_):
            # Its logit exactly, in float64: sklearn's float32 probabilities round 1 - p near 1 to a few digits,
            # which a Platt slope below 1 spreads into 1e-4 of calibrated probability (the ONNX graph of a linear
            # model is computed in float64 and would not agree).
            weights = np.asarray(self.estimator_.coef_, dtype=np.float64).ravel()
            raw = np.asarray(X, dtype=np.float64) @ weights + float(self.estimator_.intercept_[0])
            bound = _logit(np.array([1 - _EPS]))[0]
            return np.clip(raw, -bound, bound)
        return _logit(np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)[:, 1])

    def predict_proba(self, X) -> np.ndarray:
        positive = 1.0 / (1.0 + np.exp(-(self.slope * self._base_logit(X) + self.intercept)))
        return np.column_stack([1.0 - positive, positive])

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


def _shape_calculator(operator) -> None:
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    calculate_linear_classifier_output_shapes(operator)


def _converter(scope, operator, container) -> None:
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import (
        OnnxAdd,
        OnnxArgMax,
        OnnxClip,
        OnnxConcat,
        OnnxGather,
        OnnxLog,
        OnnxMul,
        OnnxSigmoid,
        OnnxSub,
    )
    from skl2onnx.common.data_types import guess_numpy_type

    model = operator.raw_operator
    opset = container.target_opset
    dtype = guess_numpy_type(operator.inputs[0].type)  # float32, or float64 for a graph computed in double
    base = OnnxSubEstimator(model.estimator_, operator.inputs[0], op_version=opset, options={"zipmap": False})
    positive = OnnxGather(base[1], np.array([1], dtype=np.int64), axis=1, op_version=opset)
    clipped = OnnxClip(positive, np.array(_EPS, dtype=dtype), np.array(1 - _EPS, dtype=dtype), op_version=opset)
    one = np.array([1.0], dtype=dtype)
    logit = OnnxSub(OnnxLog(clipped, op_version=opset),
                    OnnxLog(OnnxSub(one, clipped, op_version=opset), op_version=opset), op_version=opset)
    scaled = OnnxAdd(OnnxMul(logit, np.array([model.slope], dtype=dtype), op_version=opset),
                     np.array([model.intercept], dtype=dtype), op_version=opset)
    calibrated = OnnxSigmoid(scaled, op_version=opset)
    probabilities = OnnxConcat(OnnxSub(one, calibrated, op_version=opset), calibrated, axis=1, op_version=opset,
                               output_names=[operator.outputs[1]])
    # Labels are class indices 0/1; registry models are trained on 0/1 labels.
    label = OnnxArgMax(probabilities, axis=1, keepdims=0, op_version=opset, output_names=[operator.outputs[0]])
    probabilities.add_to(scope, container)
    label.add_to(scope, container)


def register_converter() -> None:
    """Teach skl2onnx to convert :class:`PlattCalibratedClassifier` (idempotent)."""
    global _registered
    with _register_lock:
        if _registered:
            return
        from skl2onnx import update_registered_converter

        update_registered_converter(
            PlattCalibratedClassifier,
            "LearnloopPlattCalibratedClassifier",
            _shape_calculator,
            _converter,
            options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
        )
        _registered = True
