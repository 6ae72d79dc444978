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
