"""Plain data crossing the ``grading_nlp`` boundary."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ModelKind(StrEnum):
    """Which learner a prompt gets, chosen from how many instructor-graded essays exist."""

    full = "full"  # TF-IDF word/char n-grams + similarity to high scorers + handcrafted → boosted trees
    few_shot = "few_shot"  # handcrafted features only → ridge + shallow trees (n-grams overfit at ~50 essays)


class GradeStatus(StrEnum):
    """What the AI could do with a submission."""

    suggested = "suggested"  # an AI-suggested grade an instructor accepts or overrides
    needs_manual_grading = "needs_manual_grading"  # no usable AI grade: an instructor grades from scratch


@dataclass(frozen=True)
class AiGrade:
    """An AI-suggested grade; never shown to a learner before an instructor accepts or overrides it.

    ``interval`` is a conformal prediction interval on the prompt's scale (``coverage`` is its target coverage,
    checked on held-out essays); ``confidence`` in [0, 1] shrinks as the interval widens relative to the scale;
    ``needs_review`` routes the grade to the front of the instructor's queue.
    """

    status: GradeStatus
    score: int | None
    interval: tuple[int, int] | None
    confidence: float
    needs_review: bool
    reasons: list[str] = field(default_factory=list)
    model_version: str | None = None
    prompt_id: int | None = None
    coverage: float | None = None
    score_range: tuple[int, int] | None = None
