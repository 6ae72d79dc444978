"""Plain data crossing the ``recommender`` boundary (search hits, content items, served recommendation lists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class ContentChange(StrEnum):
    """What a ``lms.content.events`` event did to an item (``content.<change>``)."""

    created = "created"
    updated = "updated"
    deleted = "deleted"


class FusionMethod(StrEnum):
    """How BM25 and dense scores are combined."""

    convex = "convex"  # alpha * minmax(dense) + (1 - alpha) * minmax(bm25)
    rrf = "rrf"  # reciprocal rank fusion, 1 / (k + rank)


@dataclass(frozen=True)
class ContentItem:
    """A searchable piece of course content. ``course_id`` decides who may see it."""

    item_id: str
    course_id: str
    title: str
    body: str = ""
    kind: str = "page"
    url: str | None = None


@dataclass(frozen=True)
class SearchHit:
    """One ranked result: the fused score and its two components (min-max normalised over the query's candidates,
    so they order the hits of one query), and two absolute signals: ``similarity``, the cosine of the query's and
    the item's embeddings (None when the dense retriever did not return it), and ``lexical_match`` (the item shares
    a word with the query)."""

    item_id: str
    course_id: str
    title: str
    score: float
    bm25_score: float
    dense_score: float
    url: str | None = None
    similarity: float | None = None
    lexical_match: bool = False


class Variant(StrEnum):
    """A/B arm of the recommendation experiment."""

    control = "control"  # popularity within course and week
    treatment = "treatment"  # the learnloop ranker


@dataclass(frozen=True)
class Recommendation:
    """One recommended content item with the score that ranked it."""

    item_id: str
    score: float
    reason: str


@dataclass(frozen=True, eq=False)
class RankerInputs:
    """What the learned ranker scored, for a uniform sample of one list's candidates (the items the learner has not
    opened): the serving prediction log carries it so drift monitoring can compare served inputs with the ranker's
    training rows. ``rows`` is float32 ``len(item_ids) × len(columns)`` exactly as fed to the ONNX graph,
    ``columns`` the ranker's features in model-input order, ``scores`` the ranker's score of each row and
    ``candidates`` how many candidates the sample was drawn from."""

    columns: tuple[str, ...]
    item_ids: tuple[str, ...]
    rows: np.ndarray
    scores: np.ndarray
    candidates: int


@dataclass(frozen=True)
class RecommendationList:
    """A served list; ``experiment``/``variant`` are logged with it so feedback can be attributed."""

    user_id: str
    course_id: str
    experiment: str
    variant: Variant
    items: tuple[Recommendation, ...] = field(default_factory=tuple)
    cold_start: bool = False
    # The registered ranker version that scored a treatment list (None for control and cold start).
    model_version: str | None = None
    # Set when the treatment arm could not use the learned ranker (no champion registered, or it failed to load):
    # the list is popularity within course and week instead.
    fallback: str | None = None
    # Treatment lists the ranker scored: its inputs for a sample of the candidates (for the prediction log; a random
    # sample, so not part of a list's identity).
    ranker_inputs: RankerInputs | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RankerStatus:
    """The learned ranker as this process serves it (``recommender.api.ranker_status``).

    The champion is looked up at the first treatment-arm list and again every few minutes: ``resolved`` is False
    until then. ``version`` and ``n_inputs`` (the features it scores) describe the loaded champion; ``reason`` says
    why treatment lists fall back to popularity instead (no champion registered, or it failed to load), or, beside
    a ``version``, why the loaded ranker is kept without the registry's word (it could not be read)."""

    model_name: str
    alias: str
    resolved: bool = False
    version: str | None = None
    n_inputs: int | None = None
    loaded_at: str | None = None
    reason: str | None = None
