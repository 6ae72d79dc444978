"""Plain data crossing the ``serving`` boundary: what a risk answer is and how it was produced."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PredictionStatus(StrEnum):
    """How a risk answer was produced."""

    scored = "scored"  # the champion scored the registration's online features
    cold_start = "cold_start"  # enrolled but no activity/assessment features yet: scored on what exists, flagged
    unavailable = "unavailable"  # the model service could not answer; the documented fallback (no score)


class RiskRefusal(StrEnum):
    """Why the service declined to score (answered with HTTP 404 and this code)."""

    unknown_student = "unknown_student"
    unknown_course = "unknown_course"
    not_enrolled = "not_enrolled"


@dataclass(frozen=True)
class RiskPrediction:
    """A risk answer for one (student, course) registration.

    ``risk_score`` is P(withdraw or fail) in [0, 1], or None when ``status`` is ``unavailable`` (the fallback the
    platform shows as "risk unavailable"). ``model_version`` is the registry version that produced the score.
    """

    student_id: int
    course_id: str
    risk_score: float | None
    status: PredictionStatus
    model_name: str | None = None
    model_version: str | None = None
    reason: str | None = None
    latency_ms: float | None = None

    @property
    def is_fallback(self) -> bool:
        return self.status is PredictionStatus.unavailable
