"""Serving one recommendation list from a course's interactions (the online twin of the OULAD evaluation)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput
from recommender._recommend import rankers
from recommender._recommend.clicks import course_clicks
from recommender.data import Recommendation, RecommendationList, Variant

_REQUIRED_INTERACTIONS = ("user_id", "item_id", "day")


def recommend(
    *,
    user_id: str,
    course_id: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    day: int,
    limit: int,
    variant: Variant,
    experiment: str,
    ranker=None,
    ranker_unavailable: str | None = None,
) -> RecommendationList:
    """``ranker``: the champion :class:`OnnxRanker` (None: treatment falls back to popularity within course and
    week, with ``ranker_unavailable`` as the reason)."""
    missing = [c for c in _REQUIRED_INTERACTIONS if c not in interactions.columns]
    if missing or "item_id" not in items.columns:
        raise InvalidInput(
            f"interactions need columns {list(_REQUIRED_INTERACTIONS)} (missing {missing}) and items need item_id"
        )
    if items.empty:
        return RecommendationList(user_id, course_id, experiment, variant, (), cold_start=True)
    # Identifiers become positions; the click matrix code is shared with the offline evaluation.
    item_ids = items["item_id"].astype(str).tolist()
    item_pos = {item_id: i for i, item_id in enumerate(item_ids)}
    frame = interactions.assign(
        item_id=interactions["item_id"].astype(str), user_id=interactions["user_id"].astype(str)
    )
    frame = frame[frame["item_id"].isin(item_pos) & (frame["day"] < day)]
    learners = sorted(set(frame["user_id"]) | {user_id})
    learner_pos = {learner: i for i, learner in enumerate(learners)}
    clicks = pd.DataFrame(
        {
            "id_student": frame["user_id"].map(learner_pos).to_numpy(dtype=np.int64),
            "id_site": frame["item_id"].map(item_pos).to_numpy(dtype=np.int64),
            "date": frame["day"].to_numpy(dtype=float),
        }
    )
    item_frame = pd.DataFrame(
        {
            "id_site": np.arange(len(item_ids)),
            "activity_type": items["kind"].astype(str).to_numpy() if "kind" in items else "page",
            "week_from": items["week_from"].to_numpy() if "week_from" in items else np.nan,
        }
    )
    kinds = tuple(sorted(item_frame["activity_type"].unique()))
    course = course_clicks(clicks, item_frame, course_id=course_id, length_days=day + 1, kinds=kinds)
    row = np.searchsorted(course.learners, learner_pos[user_id])
    has_row = row < len(course.learners) and course.learners[row] == learner_pos[user_id]
    cold_start = not has_row
    model_version = fallback = None
    if cold_start or variant is Variant.control or ranker is None:
        scores = rankers.popularity_recent(course, day)[0]
        seen = np.zeros(len(item_ids), dtype=bool) if cold_start else course.seen(day)[row]
        reason = "popular in this course this week"
        if not cold_start and variant is Variant.treatment:
            fallback = ranker_unavailable or "no recommender model registered"
    else:
        scores = ranker.score(rankers.features(course, day)[row])
        seen = course.seen(day)[row]
        reason = f"learnloop ranker v{ranker.version}"
        model_version = ranker.version
    order = [i for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable") if not seen[i]][:limit]
    picked = tuple(Recommendation(item_ids[course.items[i]], float(scores[i]), reason) for i in order)
    return RecommendationList(user_id, course_id, experiment, variant, picked, cold_start=cold_start,
                              model_version=model_version, fallback=fallback)


class OnnxRanker:
    """The registered learned ranker, scored with ONNX Runtime (torch- and sklearn-free)."""

    def __init__(self, onnx_bytes: bytes, schema, version: str) -> None:
        from models.api import OnnxClassifier

        if schema.feature_names != list(rankers.FEATURES):
            raise InvalidInput(
                f"recommender model v{version} expects features {schema.feature_names}, this code computes "
                f"{list(rankers.FEATURES)}; retrain with `learnloop train recommender`"
            )
        self.version = str(version)
        self._model = OnnxClassifier(onnx_bytes, schema)

    def score(self, feats: np.ndarray) -> np.ndarray:
        """P(first open within 7 days) per row of ``feats`` (``n × len(FEATURES)``)."""
        frame = pd.DataFrame(np.asarray(feats, dtype=np.float32), columns=list(rankers.FEATURES))
        return self._model.predict_proba(frame)
