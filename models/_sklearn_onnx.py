"""Export fitted scikit-learn classifiers (preprocessing + learner + calibrator) to one ONNX graph.

Every feature is its own ONNX input of shape ``[n, 1]`` (float32 for numeric, string for categorical), so the
fitted ``ColumnTransformer`` — imputers, encoders — lives inside the graph and serving feeds raw feature values.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput
from models import _calibration
from models.data import MISSING_CATEGORY, FeatureInput, InputKind, ModelSchema, OnnxExport

PARITY_TOLERANCE = 1e-5
_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
_patch_lock = threading.Lock()
_patched = False


def _snap_tree_thresholds_to_float32(estimator) -> int:
    """Round every fitted HistGradientBoosting split threshold down to the nearest float32.

    HGB learns float64 thresholds (midpoints between bin edges); ONNX stores them as float32. When the
    float32 rounding of a threshold lands *on* a data value above it, ``x <= t`` flips for that value and
    the ONNX tree takes the other branch (seen: 0.0034 probability error on synthetic OULAD). The model's
    inputs are float32 (``model_frame``), and for any float32 ``x``, ``x <= t`` equals ``x <= floor32(t)``,
    so snapping changes no native prediction and makes the ONNX comparison exact. Returns thresholds moved.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    moved, seen, stack = 0, set(), [estimator]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
            for stage in getattr(obj, "_predictors", []):
                for predictor in stage:
                    thresholds = predictor.nodes["num_threshold"]
                    as_float32 = thresholds.astype(np.float32)
                    rounded_up = as_float32.astype(np.float64) > thresholds
                    below = np.nextafter(as_float32, np.float32(-np.inf)).astype(np.float64)
                    predictor.nodes["num_threshold"] = np.where(rounded_up, below, thresholds)
                    moved += int(rounded_up.sum())
            continue
        if isinstance(obj, list | tuple):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif type(obj).__module__.split(".")[0] in {"sklearn", "models", "training"} and hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return moved


def _patch_hist_gradient_boosting_converter() -> None:
    """skl2onnx 1.20 passes a Python bool for ``nodes_missing_value_tracks_true`` of HistGradientBoosting trees;
    protobuf 7 rejects bools in an int list ("Expected an int, got a boolean"). Cast it to int — the attribute is
    0/1 by the ONNX spec, so the graph is exactly what skl2onnx meant to write."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        from skl2onnx.common import tree_ensemble

        original_add_node = tree_ensemble.add_node

        def add_node_with_int_missing(*args, **kwargs):
            if "nodes_missing_value_tracks_true" in kwargs:
                kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
            return original_add_node(*args, **kwargs)

        tree_ensemble.add_node = add_node_with_int_missing
        _patched = True


def infer_inputs(frame: pd.DataFrame, feature_names: Sequence[str]) -> tuple[FeatureInput, ...]:
    """Numeric dtypes (incl. bool) become numeric inputs; everything else is categorical."""
    inputs = []
    for name in feature_names:
        if name not in frame.columns:
            raise InvalidInput(f"feature '{name}' is not a column of the frame; build the frame from the FeatureService")
        dtype = frame[name].dtype
        numeric = pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)
        inputs.append(FeatureInput(name, InputKind.numeric if numeric else InputKind.categorical))
    return tuple(inputs)


def model_frame(frame: pd.DataFrame, schema_inputs: Sequence[FeatureInput]) -> pd.DataFrame:
    """The exact values the model sees, in training and in serving: numeric → float32 (NaN kept), categorical →
    str with absent values as ``MISSING_CATEGORY``. Fitting on this frame makes native and ONNX agree bit for bit
    on the inputs."""
    columns = {}
    for item in schema_inputs:
        if item.name not in frame.columns:
            raise InvalidInput(f"feature '{item.name}' is missing from the input rows")
        values = frame[item.name]
        if item.kind is InputKind.numeric:
            columns[item.name] = pd.to_numeric(values, errors="coerce").astype("float32")
        else:
            columns[item.name] = values.astype("object").where(values.notna(), MISSING_CATEGORY).astype(str)
    return pd.DataFrame(columns, index=frame.index)


def onnx_feeds(frame: pd.DataFrame, schema: ModelSchema) -> dict[str, np.ndarray]:
    """ONNX Runtime feeds (one ``[n, 1]`` array per feature) from rows holding the schema's features."""
    prepared = model_frame(frame, schema.inputs)
    feeds = {}
    for item in schema.inputs:
        column = prepared[item.name].to_numpy()
        if item.kind is InputKind.numeric:
            feeds[item.name] = column.astype(np.float32).reshape(-1, 1)
        else:
            feeds[item.name] = column.astype(object).reshape(-1, 1)
    return feeds


def export_classifier(
    estimator,
    held_out: pd.DataFrame,
    schema: ModelSchema,
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> OnnxExport:
    """Convert a fitted classifier that takes the schema's columns to ONNX and assert parity on held-out rows.

    Raises ``InvalidInput`` when the largest absolute difference of predicted probabilities exceeds ``tolerance``:
    such a graph must never be registered.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    _patch_hist_gradient_boosting_converter()
    _calibration.register_converter()
    _snap_tree_thresholds_to_float32(estimator)
    estimator = _with_column_inputs(estimator, held_out, schema)
    double = _computes_in_double(estimator)
    numeric_type = DoubleTensorType if double else FloatTensorType
    initial_types = [
        (item.name, numeric_type([None, 1]) if item.kind is InputKind.numeric else StringTensorType([None, 1]))
        for item in schema.inputs
    ]
    onnx_model = to_onnx(
        estimator,
        initial_types=initial_types,
        options={id(estimator): {"zipmap": False}},
        target_opset=_TARGET_OPSET,
        final_types=None,
    )
    if double:
        _cast_float_inputs_to_double(onnx_model)
    # skl2onnx names the outputs label/probabilities; keep the schema's name authoritative.
    output_names = [output.name for output in onnx_model.graph.output]
    if schema.probability_output not in output_names:
        raise InvalidInput(f"the exported graph has outputs {output_names}, not '{schema.probability_output}'")
    onnx_bytes = onnx_model.SerializeToString()
    max_diff = measure_parity(estimator, onnx_bytes, held_out, schema)
    if not max_diff <= tolerance:
        raise InvalidInput(
            f"ONNX parity failed: max |p_native - p_onnx| = {max_diff:.3g} > {tolerance:g} on {len(held_out)} "
            "held-out rows; do not register this model (check float32 inputs and converter support)"
        )
    return OnnxExport(onnx_bytes=onnx_bytes, schema=schema, parity_max_abs_diff=float(max_diff),
                      parity_rows=len(held_out), estimator=estimator)


def _computes_in_double(estimator) -> bool:
    """Linear learners run in float64 inside the graph (fed float32 like every model).

    A logistic regression over standardised, collinear features (click windows of 7/14/28 days and cumulative)
    sums large terms that cancel; in float32 that cost up to 3e-4 in probability on real OULAD rows, 30× the
    parity bound. Trees compare thresholds and need no more than float32 (their thresholds are snapped above).
    """
    from sklearn.pipeline import Pipeline

    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    final = getattr(final, "estimator_", final)  # the Platt wrapper's base learner
    return _calibration.has_linear_logit(final)


def _cast_float_inputs_to_double(onnx_model) -> None:
    """Keep the graph's public inputs float32 (what serving feeds every model) and cast each to float64 first."""
    from onnx import TensorProto, helper

    graph = onnx_model.graph
    casts = []
    for graph_input in graph.input:
        tensor_type = graph_input.type.tensor_type
        if tensor_type.elem_type != TensorProto.DOUBLE:
            continue
        name, inner = graph_input.name, f"{graph_input.name}__float64"
        for node in graph.node:
            node.input[:] = [inner if value == name else value for value in node.input]
        casts.append(helper.make_node("Cast", [name], [inner], to=TensorProto.DOUBLE, name=f"cast_{name}"))
        tensor_type.elem_type = TensorProto.FLOAT
    nodes = list(casts)
    for node in graph.node:
        if node.op_type != "Imputer":  # ai.onnx.ml Imputer has float kernels only; it imputes float32 natively too
            nodes.append(node)
            continue
        (source,), (target,) = node.input, node.output
        node.input[:] = [f"{source}__float32"]
        node.output[:] = [f"{target}__float32"]
        nodes += [helper.make_node("Cast", [source], [f"{source}__float32"], to=TensorProto.FLOAT,
                                   name=f"{node.name}_in"),
                  node,
                  helper.make_node("Cast", [f"{target}__float32"], [target], to=TensorProto.DOUBLE,
                                   name=f"{node.name}_out")]
    del graph.node[:]
    graph.node.extend(nodes)


def _with_column_inputs(estimator, held_out: pd.DataFrame, schema: ModelSchema):
    """Per-feature ONNX inputs need a ColumnTransformer in front; a bare estimator on all-numeric features gets a
    stateless passthrough one (fitting it only records column names)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline) and isinstance(estimator.steps[0][1], ColumnTransformer):
        return estimator
    if len(schema.inputs) == 1:
        return estimator
    if any(item.kind is not InputKind.numeric for item in schema.inputs):
        raise InvalidInput("an estimator with categorical inputs must be a Pipeline starting with a ColumnTransformer")
    # Array output: the estimator was fitted on an array (named columns would make it warn on every predict).
    columns = ColumnTransformer([("features", "passthrough", schema.feature_names)],
                                verbose_feature_names_out=False)
    columns.fit(model_frame(held_out, schema.inputs))
    return Pipeline([("columns", columns), ("model", estimator)])


def measure_parity(estimator, onnx_bytes: bytes, held_out: pd.DataFrame, schema: ModelSchema) -> float:
    """Largest absolute difference between native and ONNX probabilities on the given rows."""
    if held_out.empty:
        raise InvalidInput("parity needs at least one held-out row")
    prepared = model_frame(held_out, schema.inputs)
    native = np.asarray(estimator.predict_proba(prepared), dtype=np.float64)
    onnx = OnnxClassifier(onnx_bytes, schema).predict_proba_matrix(held_out)
    return float(np.max(np.abs(native - onnx)))


class OnnxClassifier:
    """An ONNX Runtime session over an exported classifier; needs only onnxruntime, numpy and pandas."""

    def __init__(self, onnx_bytes: bytes, schema: ModelSchema) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # single rows dominate serving; threads cost more than they give
        self.schema = schema
        self._session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        # A converter may prune an input the fitted graph never reads; feed only what the graph declares.
        self._input_names = {item.name for item in self._session.get_inputs()}

    def predict_proba_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        feeds = {name: value for name, value in onnx_feeds(frame, self.schema).items() if name in self._input_names}
        (probabilities,) = self._session.run([self.schema.probability_output], feeds)
        return np.asarray(probabilities, dtype=np.float64)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """P(positive class) per row."""
        return self.predict_proba_matrix(frame)[:, self.schema.positive_class_index]
