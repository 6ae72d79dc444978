"""Public surface of ``training``: the model-agnostic registry (register, promote, list, roll back, load) and
the training pipelines (``train_risk``/``evaluate_risk``).

Every registered version carries its ONNX graph, its input schema (features in model-input order), the fitted
preprocessing (inside the graph, described in ``preprocessing.json``), metrics, the FeatureService name/version,
fingerprints of its training and held-out data, and the git commit; a trainer may add a sample of its training
inputs (``reference_sample``: drift monitoring's reference, read back with :func:`drift_reference`; the
recommender's trainer does, the risk model's reference is rebuilt from its FeatureService). The newest version is
``challenger``; ``promote`` moves ``champion`` after a gate; serving loads ``models:/<name>@champion``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from learnloop.settings import Settings
from models.api import ChampionModel
from training import _registry
from training._registry import register_onnx_model
from training.data import (
    GateCheck,
    GatePolicy,
    Learner,
    ModelVersionInfo,
    PromotionDecision,
    PromotionOutcome,
    RiskRecipe,
)

__all__ = [
    "ChampionModel",
    "GateCheck",
    "GatePolicy",
    "Learner",
    "ModelVersionInfo",
    "PromotionDecision",
    "PromotionOutcome",
    "RiskRecipe",
    "data_fingerprint",
    "drift_reference",
    "evaluate_gate",
    "evaluate_risk",
    "list_models",
    "load_risk_frame",
    "load_champion",
    "load_champion_onnx",
    "promote",
    "register_onnx_model",
    "rollback",
    "synthetic_risk_frame",
    "train_risk",
]


def data_fingerprint(frame: pd.DataFrame) -> str:
    """A short content hash of a frame (columns and values); logged for training and held-out data."""
    return _registry.data_fingerprint(frame)


def drift_reference(info: ModelVersionInfo, *, settings: Settings | None = None) -> pd.DataFrame | None:
    """The sample of its training inputs a version logged for drift monitoring (``register_onnx_model``'s
    ``reference_sample``), or None when it logged none. ``NotFound`` when the version names one its run lacks."""
    return _registry.drift_reference(info, settings=settings)


def list_models(name: str | None = None, *, settings: Settings | None = None) -> list[ModelVersionInfo]:
    """Every registered version (of ``name``, or of all models) with aliases and held-out metrics, oldest first."""
    return _registry.list_models(name, settings=settings)


def evaluate_gate(
    policy: GatePolicy, challenger: ModelVersionInfo, champion: ModelVersionInfo | None
) -> list[GateCheck]:
    """The promotion gate's checks (held-out metric vs champion within tolerance, same held-out data, calibration
    bound, no subgroup collapse, ONNX parity) without moving any alias."""
    return _registry.evaluate_gate(policy, challenger, champion)


def promote(
    name: str,
    *,
    policy: GatePolicy | None = None,
    force_reason: str | None = None,
    settings: Settings | None = None,
) -> PromotionDecision:
    """Move alias ``champion`` of ``name`` to its ``challenger`` if the gate passes (or if ``force_reason`` is given).

    The decision and every check's evidence are logged on the challenger's run (``promotion/*.json`` and
    ``promotion.*`` tags). A refused promotion returns outcome ``refused`` and leaves the champion unchanged.
    Raises ``NotFound`` without a challenger, ``Conflict`` when the challenger is already champion and
    ``InvalidInput`` for an empty force reason.
    """
    return _registry.promote(name, policy=policy, force_reason=force_reason, settings=settings)


def rollback(name: str, *, to_version: str | None = None, settings: Settings | None = None) -> str:
    """Move ``champion`` back to the version it replaced (or to ``to_version``); returns the new champion version."""
    return _registry.rollback(name, to_version=to_version, settings=settings)


def load_champion_onnx(name: str, *, settings: Settings | None = None) -> ChampionModel:
    """``(onnx_bytes, schema, version)`` of ``models:/<name>@champion`` (never "latest"); ``NotFound`` without one."""
    from models.api import load_champion_onnx as _load

    return _load(name, settings=settings)


load_champion = load_champion_onnx


def train_risk(*, frame=None, recipe=None, register: bool = True, settings: Settings | None = None, progress=None):
    """Train the at-risk model on the protocol's train presentations, evaluate on the held-out ones, export to
    ONNX (parity asserted) and, with ``register``, log everything to MLflow as a new ``challenger`` of ``risk``.

    ``frame`` defaults to ``pipelines.api.build_risk_training_set`` (cached per feature-source build); ``recipe``
    is a ``RiskRecipe`` (learner, boosting params, train/test presentations). Returns a ``RiskRun`` with
    ``evaluation``, ``fitted``, ``features`` and the registered ``version``.
    """
    from training import _risk

    return _risk.train_risk(frame=frame, recipe=recipe, register=register, settings=settings, progress=progress)


def evaluate_risk(*, frame=None, recipe=None, progress=None) -> dict[str, Any]:
    """The issue's evaluation protocol as one JSON-ready dict (``auc_by_week``, ``auc_active_by_week``,
    ``auc_clicks_active_by_week``, ``brier``, ``test_presentations``, ``n_test`` …); registers nothing."""
    from training import _risk

    return _risk.evaluate_risk(frame=frame, recipe=recipe, progress=progress)


def load_risk_frame(*, weeks=("5", "10", "15", "end"), presentations=None, use_cache: bool = True,
                    settings: Settings | None = None, service: str = "student_risk_v2") -> pd.DataFrame:
    """The risk training set (label rows + the features of FeatureService ``service``) from the feature store,
    cached on disk per service and source build."""
    from training import _risk

    return _risk.load_risk_frame(weeks=weeks, presentations=presentations, use_cache=use_cache, settings=settings,
                                 service=service)


def synthetic_risk_frame(*, students_per_course: int = 120, seed: int = 0,
                         service: str = "student_risk_v2") -> pd.DataFrame:
    """A small synthetic risk training set (4 presentations × AAA/BBB, weeks 5/10/15/end) with the columns of
    ``pipelines.api.build_risk_training_set`` and real signal; AAA has click features, BBB has none (NaN).
    For notebooks and tests that must run in seconds — never for reported figures."""
    from training import _synthetic

    return _synthetic.synthetic_risk_frame(students_per_course=students_per_course, seed=seed, service=service)
