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


@dataclass(frozen=True)
class EssayGraderStatus:
    """One prompt's saved grader as ``grade_essay`` serves it from ``<data dir>/grading/prompt-<id>/``.

    Graders are files, not registry aliases: ``location`` is the folder, ``trained_on`` the ASAP-format essays it
    learned from, ``trained_at`` when (ISO 8601, UTC). ``loaded`` says whether this process holds the current file
    version (a grader loads at its prompt's first essay); ``problem`` says why it cannot be served (no model file,
    a load that failed) or what degrades it (no ONNX head: graded with the slower scikit-learn head).
    """

    prompt_id: int
    location: str
    model_version: str | None = None
    kind: str | None = None
    trained_on: str | None = None
    trained_at: str | None = None
    n_inputs: int | None = None
    registered_version: str | None = None
    loaded: bool = False
    servable: bool = True
    problem: str | None = None

    @property
    def name(self) -> str:
        """The model's name in the prediction log, drift monitoring and the registry."""
        return f"essay_grader_p{self.prompt_id}"
