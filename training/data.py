"""Plain data crossing the ``training`` boundary: gate policies, promotion decisions, registered versions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class PromotionOutcome(StrEnum):
    promoted = "promoted"  # the gate passed and champion moved
    refused = "refused"  # the gate failed; champion unchanged
    forced = "forced"  # the gate failed but an operator forced the move with a reason


@dataclass(frozen=True)
class GatePolicy:
    """What a challenger must show to become champion. Metric names are keys logged on the training run.

    ``subgroup_prefix`` selects per-subgroup metrics (e.g. ``subgroup_auc.gender:F``); a subgroup "collapses" when it
    falls below ``min_subgroup_value`` or drops more than ``max_subgroup_drop`` below the champion's value.

    ``baseline_metric`` names the challenger's own metric for what is served without any model (the fallback rule,
    scored on the same held-out rows): a model that does not beat it by ``baseline_margin`` would make the answers
    worse than having no champion at all, even as the first version.
    """

    metric: str = "auc"
    higher_is_better: bool = True
    tolerance: float = 0.01
    calibration_metric: str = "ece"
    max_calibration_error: float = 0.05
    subgroup_prefix: str = "subgroup_auc."
    max_subgroup_drop: float = 0.05
    min_subgroup_value: float = 0.6
    parity_metric: str = "onnx_parity_max_abs_diff"
    max_parity_diff: float = 1e-5
    require_same_eval_data: bool = True
    baseline_metric: str | None = None
    baseline_margin: float = 0.0


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of ``promote`` and its evidence (also logged as JSON on the challenger's run)."""

    model_name: str
    outcome: PromotionOutcome
    challenger_version: str
    previous_champion_version: str | None
    champion_version: str | None
    checks: list[GateCheck]
    force_reason: str | None = None
    decided_at: str = ""

    @property
    def gate_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["outcome"] = self.outcome.value
        payload["gate_passed"] = self.gate_passed
        return payload


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version with its aliases and the metrics logged on its training run."""

    name: str
    version: str
    aliases: list[str]
    run_id: str | None
    created_at: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class Learner(StrEnum):
    hgb = "hgb"  # HistGradientBoosting (default)
    logreg = "logreg"  # baseline: median imputation + scaling + logistic regression


@dataclass(frozen=True)
class RiskRecipe:
    """Everything that decides a risk model besides its data (logged as run params)."""

    learner: Learner = Learner.hgb
    max_iter: int = 300
    learning_rate: float = 0.05
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 80
    l2_regularization: float = 1.0
    monotonic: bool = True
    calibrate: bool = True
    random_state: int = 0
    # (max_iter, min_samples_leaf, max_leaf_nodes) candidates; when given, the capacity is chosen on the training
    # presentations alone (leave one out) and the three fields above are ignored. Empty: use them as given.
    capacity_grid: tuple[tuple[int, int, int], ...] = ()
    # The FeatureService the model reads; recorded with the model so serving reads the same one.
    feature_service: str = "student_risk_v2"
    train_presentations: tuple[str, ...] = ("2013B", "2013J", "2014B")
    test_presentations: tuple[str, ...] = ("2014J",)

    def params(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["learner"] = self.learner.value
        payload["train_presentations"] = ",".join(self.train_presentations)
        payload["test_presentations"] = ",".join(self.test_presentations)
        payload["capacity_grid"] = ";".join("/".join(map(str, item)) for item in self.capacity_grid) or "fixed"
        return payload


def train_command(model_name: str) -> str:
    """The command that trains (and registers) a model of this name, for error messages that tell people what to
    run: ``risk``, ``recommender`` and ``essay_grader_p<prompt>`` have one each; there is no ``learnloop train
    <any name>``."""
    import re

    essay = re.fullmatch(r"essay_grader_p(\d+)", model_name)
    if essay is not None:
        return f"learnloop train essays --prompt {essay[1]} --register"
    if model_name in ("risk", "recommender"):
        return f"learnloop train {model_name}"
    return "learnloop train risk | recommender | essays --register"
