"""Plain data of the interventions job: its policy, its per-enrollment decisions and its run summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

RISK_MODEL = "risk"


@dataclass(frozen=True)
class InterventionPolicy:
    """When to alert. ``threshold``: alert at risk ≥ this. ``cooldown_days``: after an alert, the same enrollment
    is not alerted again for this many days unless its risk rose by at least ``rearm_margin`` (probability
    points) over the last alert's risk."""

    threshold: float = 0.7
    cooldown_days: int = 7
    rearm_margin: float = 0.10
    max_drivers: int = 3
    min_contribution: float = 0.01  # a driver must move the risk by at least one percentage point
    min_cohort: int = 10  # fewer scored learners in a course: compare with every scored learner instead
    remedial_items: int = 3
    deadline_extension_days: int = 7


class Decision(StrEnum):
    below_threshold = "below_threshold"
    raise_alert = "raise_alert"
    suppressed_by_cooldown = "suppressed_by_cooldown"


@dataclass(frozen=True)
class Driver:
    """One reason for a high score, in words: a feature group and how much it raises the risk."""

    key: str
    text: str
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "contribution": round(float(self.contribution), 4)}


@dataclass
class RunSummary:
    """What ``learnloop interventions run --json`` prints."""

    scored: int = 0
    alerts_raised: int = 0
    suppressed_by_cooldown: int = 0
    below_threshold: int = 0
    active_enrollments: int = 0
    not_linked: int = 0  # enrollments without metadata.id_student / metadata.presentation
    no_features: int = 0  # linked, but the feature store holds nothing for the registration
    threshold: float = 0.0
    cooldown_days: int = 0
    rearm_margin: float = 0.0
    model_name: str = RISK_MODEL
    model_version: str | None = None
    feature_service: str | None = None
    scoring: str = "in-process ONNX Runtime on the champion, features read in batch through the FeatureService"
    courses: int = 0
    risk_quantiles: dict[str, float] = field(default_factory=dict)
    top_drivers: dict[str, int] = field(default_factory=dict)  # how often each driver group made the top list
    actions: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
