"""Public surface of ``models``: exporting served models to ONNX and running them with ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from models import _calibration, _sklearn_onnx
from models.data import ChampionModel, FeatureInput, InputKind, ModelAlias, ModelSchema, OnnxExport
from models.text_embedding import (
    EMBEDDING_DIM,
    EmbeddingCache,
    EmbeddingPrecision,
    OnnxTextEmbedder,
    export_text_embedding_onnx,
    get_text_embedder,
    quantize_text_embedding_onnx,
)

PARITY_TOLERANCE = _sklearn_onnx.PARITY_TOLERANCE

__all__ = [
    "alias_version",
    "mlflow_client",
    "EMBEDDING_DIM",
    "EmbeddingCache",
    "EmbeddingPrecision",
    "OnnxTextEmbedder",
    "export_text_embedding_onnx",
    "get_text_embedder",
    "quantize_text_embedding_onnx",
    "PARITY_TOLERANCE",
    "ChampionModel",
    "FeatureInput",
    "InputKind",
    "ModelAlias",
    "ModelSchema",
    "OnnxClassifier",
    "OnnxExport",
    "PlattCalibratedClassifier",
    "export_sklearn_classifier",
    "fit_platt",
    "infer_inputs",
    "load_champion_onnx",
    "model_frame",
    "onnx_feeds",
]

OnnxClassifier = _sklearn_onnx.OnnxClassifier
PlattCalibratedClassifier = _calibration.PlattCalibratedClassifier


def fit_platt(base_probability: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of Platt scaling on the logit of out-of-sample base probabilities (for
    :class:`PlattCalibratedClassifier`, which exports to ONNX). Raises ``InvalidInput`` for a slope ≤ 0."""
    return _calibration.fit_platt(base_probability, labels)


def infer_inputs(frame: pd.DataFrame, feature_names: Sequence[str]) -> tuple[FeatureInput, ...]:
    """One model input per feature, in the given order: numeric dtypes → numeric, anything else → categorical."""
    return _sklearn_onnx.infer_inputs(frame, feature_names)


def model_frame(frame: pd.DataFrame, inputs: Sequence[FeatureInput]) -> pd.DataFrame:
    """The frame a model is fitted and scored on (float32 numerics, string categoricals with a missing marker).

    Fit native estimators on this frame so that native and ONNX predictions see identical values.
    """
    return _sklearn_onnx.model_frame(frame, inputs)


def onnx_feeds(frame: pd.DataFrame, schema: ModelSchema) -> dict[str, np.ndarray]:
    """ONNX Runtime input feeds for rows holding the schema's features (what serving passes to ``run``)."""
    return _sklearn_onnx.onnx_feeds(frame, schema)


def export_sklearn_classifier(
    estimator, held_out: pd.DataFrame, schema: ModelSchema, *, tolerance: float = PARITY_TOLERANCE
) -> OnnxExport:
    """Export a fitted sklearn classifier (pipeline incl. preprocessing and calibrator) to ONNX.

    Asserts parity native vs ONNX on ``held_out`` (max abs difference of probabilities ≤ ``tolerance``) and raises
    ``InvalidInput`` otherwise. HistGradientBoosting is supported through a small protobuf-7 fix of skl2onnx.
    """
    return _sklearn_onnx.export_classifier(estimator, held_out, schema, tolerance=tolerance)


def load_champion_onnx(name: str, *, settings=None) -> ChampionModel:
    """The champion of registered model ``name`` (``models:/<name>@champion``, never "latest"):
    ``(onnx_bytes, schema, version)``. Raises ``NotFound`` when no version holds the alias. Cached on disk per
    version under ``settings.cache_dir``, so a service restart does not download again."""
    from models import _champion

    return _champion.load_champion_onnx(name, settings=settings)


def mlflow_client(settings):
    """An ``MlflowClient`` on this installation's tracking and registry URI (created per call, never at import)."""
    from models import _champion

    return _champion.mlflow_client(settings)


def alias_version(client, name: str, alias: ModelAlias) -> str | None:
    """The version an alias (``champion``/``challenger``) points at, or None when the model or alias is absent."""
    from models import _champion

    return _champion.alias_version(client, name, alias)
