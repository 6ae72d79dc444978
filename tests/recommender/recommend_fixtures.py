"""Synthetic click matrices shared by the recommendation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recommender._recommend.clicks import course_clicks


def lockstep_course(n_learners: int = 60, n_items: int = 40, seed: int = 3, *, course_id: str = "X-1",
                    lag_days: int = 3):
    """Items released every 3 days in build order; each learner opens most of them with their own lag
    (0 … ``lag_days`` - 1 days behind the release) plus a few days of jitter."""
    rng = np.random.default_rng(seed)
    rows = []
    for learner in range(n_learners):
        lag = rng.integers(0, lag_days)
        for item in range(n_items):
            if rng.random() < 0.85:
                rows.append((learner, 1000 + item, 3 * item + lag + int(rng.integers(0, 3))))
    clicks = pd.DataFrame(rows, columns=["id_student", "id_site", "date"])
    kinds = ("quiz", "resource")
    items = pd.DataFrame(
        {
            "id_site": 1000 + np.arange(n_items),
            "activity_type": [kinds[i % 2] for i in range(n_items)],
            "week_from": np.nan,
        }
    )
    return course_clicks(clicks, items, course_id=course_id, length_days=3 * n_items + 10, kinds=kinds)


def platform_frames(course, *, keep_share: float = 1.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A CourseClicks as the frames the platform sends ``recommend`` (opens ``user_id, item_id, day``; items
    ``item_id, kind``); ``keep_share`` < 1 keeps that share of the opens (learners who open less)."""
    learner, item = np.nonzero(np.isfinite(course.first_click))
    interactions = pd.DataFrame({
        "user_id": [f"u{course.learners[i]}" for i in learner],
        "item_id": [f"i{course.items[j]}" for j in item],
        "day": course.first_click[learner, item].astype(int),
    })
    if keep_share < 1.0:
        interactions = interactions.sample(frac=keep_share, random_state=seed).reset_index(drop=True)
    items = pd.DataFrame({"item_id": [f"i{j}" for j in course.items],
                          "kind": [course.kinds[k] for k in course.item_kind]})
    return interactions, items


def training_courses():
    """Three small presentations of one lockstep course (what the tests train the ranker on)."""
    return [lockstep_course(n_learners=40, n_items=30, seed=s, course_id=c)
            for s, c in ((1, "X-2013B"), (2, "X-2013J"), (3, "X-2014J"))]


def fitted_ranker(courses, *, version: str = "test"):
    """(ONNX ranker fitted on every cutoff of ``courses``, its training ``RowCache``, the cutoff plan): the same
    rows, fit and ONNX export as ``learnloop train recommender``, without the registry (a few seconds)."""
    from threadpoolctl import threadpool_limits

    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs
    from recommender._recommend import learned, rankers
    from recommender._recommend.service import OnnxRanker

    cache = learned.RowCache()
    plan = [(course, day) for course in courses for day in learned.training_cutoffs(course)]
    x, y, w = cache.stack(plan)
    frame = pd.DataFrame(x[:500].astype(np.float32), columns=list(rankers.FEATURES))
    with threadpool_limits(limits=1):  # OpenMP's spinning threads take 4x longer on a shared 2-core box
        model = learned.fit(x, y, w)
    export = export_sklearn_classifier(model, frame, ModelSchema(inputs=infer_inputs(frame, rankers.FEATURES)))
    return OnnxRanker(export.onnx_bytes, export.schema, version), cache, plan, export
