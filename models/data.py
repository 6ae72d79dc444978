"""Plain data crossing the ``models`` boundary: what an exported model expects and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class InputKind(StrEnum):
    """How one model input is fed to the ONNX graph (one ONNX input per feature, shape ``[n, 1]``)."""

    numeric = "numeric"  # float32; NaN means "absent" and the graph handles it
    categorical = "categorical"  # string; absent values are fed as :data:`MISSING_CATEGORY`


MISSING_CATEGORY = "__missing__"


class ModelAlias(StrEnum):
    """Registry aliases. Serving loads ``models:/<name>@champion``, never "latest"."""

    champion = "champion"
    challenger = "challenger"


SCHEMA_FILE = "schema.json"  # beside model.onnx in every registered model version
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class FeatureInput:
    name: str
    kind: InputKind


@dataclass(frozen=True)
class ModelSchema:
    """The input contract of an exported model: its features in model-input order and where they come from.

    ``feature_service``/``feature_service_version`` name the Feast FeatureService that serves these features, so
    serving asks the store for exactly this list.
    """

    inputs: tuple[FeatureInput, ...]
    probability_output: str = "probabilities"
    positive_class_index: int = 1
    feature_service: str | None = None
    feature_service_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [item.name for item in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": item.name, "kind": item.kind.value} for item in self.inputs],
            "probability_output": self.probability_output,
            "positive_class_index": self.positive_class_index,
            "feature_service": self.feature_service,
            "feature_service_version": self.feature_service_version,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ModelSchema:
        return cls(
            inputs=tuple(FeatureInput(item["name"], InputKind(item["kind"])) for item in payload["inputs"]),
            probability_output=payload.get("probability_output", "probabilities"),
            positive_class_index=int(payload.get("positive_class_index", 1)),
            feature_service=payload.get("feature_service"),
            feature_service_version=payload.get("feature_service_version"),
            extra=dict(payload.get("extra") or {}),
        )


class ChampionModel(NamedTuple):
    """What serving needs from the registry: the ONNX graph, its input schema and the registered version."""

    onnx_bytes: bytes
    schema: ModelSchema
    version: str


@dataclass(frozen=True)
class OnnxExport:
    """An exported classifier: the serialized graph, its schema and the parity measured before it was accepted."""

    onnx_bytes: bytes
    schema: ModelSchema
    parity_max_abs_diff: float
    parity_rows: int
    # The native model exactly as exported: takes frames with the schema's named columns (a passthrough column
    # front is added to an estimator fitted on arrays). None when the graph was not exported from scikit-learn.
    estimator: Any = None
