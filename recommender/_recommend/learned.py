"""The learned ranker: a gradient-boosted pointwise model of "first opens this item within 7 days".

Rows are (learner, item not yet opened) pairs at cutoffs every 3 days, described by :data:`rankers.FEATURES` (from
clicks before the cutoff only); the label is a first open in ``[cutoff, cutoff + 7)``. Only learners who open
something in that week give rows (the evaluation scores exactly those), and negatives are subsampled.

Evaluation protocol (``learnloop eval recommend``): the list of a presentation at cutoff ``d`` is scored by a
model fitted on that presentation's cutoffs whose label week ends by ``d`` plus every cutoff of the
presentations that started earlier (BBB 2013B, then AAA 2013J, then AAA 2014J) — never on anything at or after
``d`` of the presentation being scored. The served model is fitted on every presentation (and the platform's own
courses, built from activity events) and exported to ONNX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from recommender._recommend import rankers
from recommender._recommend.clicks import CourseClicks

MODEL_NAME = "recommender"
TRAIN_STEP_DAYS = 3  # training lists every 3 days (every 7: NDCG@10 0.605 vs 0.610 in the evaluation)
NEGATIVE_SHARE = 0.1
MAX_TRAIN_ROWS = 300_000
# 200 trees at rate 0.05, leaves of >= 100 rows: harness NDCG@10 0.613 vs 0.610 with 80 trees at 0.1 (leaves >= 50)
PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 31, "min_samples_leaf": 100, "l2_regularization": 1.0}


def chronological(courses: Sequence[CourseClicks]) -> list[CourseClicks]:
    """Presentations in start order (OULAD ``2013B`` starts in February, ``2013J`` in October); others last."""

    def key(course: CourseClicks):
        tail = course.course_id.rsplit("-", 1)[-1]
        if len(tail) == 5 and tail[:4].isdigit():
            return (0, int(tail[:4]), tail[4], course.course_id)
        return (1, 0, "", course.course_id)

    return sorted(courses, key=key)


def rows_at(course: CourseClicks, day: int, *, rng: np.random.Generator, negative_share: float = NEGATIVE_SHARE):
    """(features, labels, weights) of one cutoff: learners who first open something in the week, negatives
    subsampled. A positive weighs ``1 / (the learner's positives that week)``, a negative 1: every learner's list
    counts alike, as in the evaluation's mean NDCG (a learner who opens 20 items would otherwise count 20 times;
    harness NDCG@10 0.6154 vs 0.6132)."""
    seen = course.seen(day)
    future = course.first_clicked_between(day, day + rankers.HORIZON_DAYS) & ~seen
    active = future.any(1)
    if not active.any():
        return None
    candidate = ~seen & active[:, None]
    labels = future[candidate]
    keep = labels | (rng.random(len(labels)) < negative_share)
    positives = np.broadcast_to(future.sum(1, keepdims=True), seen.shape)[candidate]
    weights = np.where(labels, 1.0 / np.maximum(positives, 1), 1.0).astype(np.float32)
    feats = rankers.features(course, day)[candidate]
    return feats[keep], labels[keep], weights[keep]


def training_cutoffs(course: CourseClicks, *, before: int | None = None) -> list[int]:
    """Cutoffs (every ``TRAIN_STEP_DAYS``) whose label week ends by ``before`` (all of the presentation when None)."""
    end = course.length_days if before is None else before
    return list(range(TRAIN_STEP_DAYS, end - rankers.HORIZON_DAYS + 1, TRAIN_STEP_DAYS))


class RowCache:
    """Training rows per (course, cutoff), computed once per evaluation (features are the expensive part)."""

    def __init__(self, seed: int = 0) -> None:
        self._rows: dict[tuple[str, int], tuple[np.ndarray, np.ndarray] | None] = {}
        self._seed = seed

    def get(self, course: CourseClicks, day: int):
        key = (course.course_id, day)
        if key not in self._rows:
            rng = np.random.default_rng([self._seed, day, sum(map(ord, course.course_id))])
            self._rows[key] = rows_at(course, day, rng=rng)
        return self._rows[key]

    def stack(self, plan: Sequence[tuple[CourseClicks, int]], *, max_rows: int = MAX_TRAIN_ROWS):
        """(features, labels, weights) of the planned cutoffs, thinned to ``max_rows``."""
        parts = [r for r in (self.get(course, day) for course, day in plan) if r is not None]
        if not parts:
            return None
        x, y, w = (np.concatenate([p[i] for p in parts]) for i in range(3))
        if len(y) > max_rows:  # keep every positive (up to half the rows), thin the negatives
            rng = np.random.default_rng(len(y))
            positives, negatives = np.flatnonzero(y), np.flatnonzero(~y)
            n_pos = min(len(positives), max_rows // 2)
            n_neg = min(len(negatives), max_rows - n_pos)
            keep = np.sort(np.concatenate([rng.choice(positives, size=n_pos, replace=False),
                                           rng.choice(negatives, size=n_neg, replace=False)]))
            x, y, w = x[keep], y[keep], w[keep]
        return x, y, w


REFERENCE_ROWS = 10_000  # training rows logged with the model as drift monitoring's reference (in the training mix)
REFERENCE_COURSE_ROWS = 500  # at least this many rows of every course (as it has), so its own traffic can be matched


def reference_sample(cache: RowCache, plan: Sequence[tuple[CourseClicks, int]], *, rows: int = REFERENCE_ROWS,
                     course_rows: int = REFERENCE_COURSE_ROWS, seed: int = 0) -> pd.DataFrame | None:
    """A sample of the planned cutoffs' training rows drawn the way serving samples what it scored, so drift
    monitoring compares like with like: serving logs :data:`rankers.FEATURES` of up to
    ``service.LOGGED_CANDIDATES`` candidates (items the learner has not opened) per scored list, drawn uniformly.

    Training keeps every positive of a (learner, cutoff) list and :data:`NEGATIVE_SHARE` of its negatives, so a kept
    negative stands for ``1 / NEGATIVE_SHARE`` candidates; and serving logs the same number of rows for every list
    whatever its number of candidates ``c`` (a learner who opened little has many), so each candidate of a list is
    logged with probability ``min(LOGGED_CANDIDATES, c) / c``. Rows are drawn (with replacement) in proportion to
    both; ``c`` is the course's items minus the learner's (``learner_items``). Lists are those of learners who open
    something in the week after the cutoff (the training rows) and opened something before it (serving answers a
    learner without history with the cold-start rule, never with the ranker); the cap on training rows (``stack``)
    does not apply.

    Courses' inputs differ far more than a course's inputs drift (on OULAD, one presentation's served lists against
    all three presentations' rows differ on half the features, against its own on 10–15%), so monitoring compares
    each course's traffic with that course's rows when it has them. ``rows`` rows follow the training mix; a course
    with fewer than ``course_rows`` of them gets more (at most ``rows`` extra in all), and ``sample_weight`` (the
    course's share in the mix over its share in the sample) restores the mix. Columns: the features, then
    ``course_id`` (as serving names the course), ``cutoff_day``, ``label`` and ``sample_weight``."""
    from recommender._recommend.platform_events import PLATFORM_COURSE_PREFIX
    from recommender._recommend.service import LOGGED_CANDIDATES

    parts = [(course, day, part) for course, day in plan if (part := cache.get(course, day)) is not None]
    if not parts:
        return None
    learner_items = rankers.FEATURES.index("learner_items")
    weights = []
    for course, _, (x, y, _) in parts:
        opened = x[:, learner_items].astype(np.float64)
        candidates = np.maximum(course.first_click.shape[1] - opened, 1.0)
        weight = np.where(y, 1.0, 1.0 / NEGATIVE_SHARE) * np.minimum(LOGGED_CANDIDATES, candidates) / candidates
        weights.append(np.where(opened > 0, weight, 0.0))  # no history: a cold start, never scored by the ranker
    weight = np.concatenate(weights)
    if not weight.sum():
        return None
    names = sorted({course.course_id for course, _, _ in parts})
    row_course = np.repeat([names.index(course.course_id) for course, _, _ in parts],
                           [len(part[1]) for _, _, part in parts])
    mass = np.bincount(row_course, weights=weight, minlength=len(names))
    target = rows * mass / mass.sum()
    in_mix = np.floor(target)  # largest remainders: exactly `rows` rows in the training mix
    in_mix[np.argsort(in_mix - target)[:rows - int(in_mix.sum())]] += 1
    extra = np.maximum(np.minimum(course_rows, np.bincount(row_course, weights=weight > 0, minlength=len(names)))
                       - in_mix, 0)
    if extra.sum() > rows:
        extra = np.floor(extra * rows / extra.sum())
    draws = (in_mix + extra).astype(int)
    rng = np.random.default_rng(seed)
    picked = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(row_course == c), size=n, replace=True,
                   p=weight[row_course == c] / mass[c]) for c, n in enumerate(draws) if n and mass[c]]))
    offsets = np.concatenate([[0], np.cumsum([len(part[1]) for _, _, part in parts])])
    which = np.searchsorted(offsets, picked, side="right") - 1
    local = picked - offsets[which]
    frame = pd.DataFrame(np.stack([parts[p][2][0][i] for p, i in zip(which, local, strict=True)]).astype(np.float32),
                         columns=list(rankers.FEATURES))
    frame["course_id"] = [parts[p][0].course_id.removeprefix(PLATFORM_COURSE_PREFIX) for p in which]
    frame["cutoff_day"] = [parts[p][1] for p in which]
    frame["label"] = np.asarray([parts[p][2][1][i] for p, i in zip(which, local, strict=True)], dtype=np.int8)
    frame["sample_weight"] = (target / np.maximum(draws, 1))[row_course[picked]]
    return frame


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *, seed: int = 0):
    """A ``HistGradientBoostingClassifier`` on float32 features (the item kind code split as a number: ONNX
    export of native categorical splits is not supported by skl2onnx); ``w``: row weights (see :func:`rows_at`),
    rescaled to mean 1."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(**PARAMS, random_state=seed)
    if w is not None:
        w = np.asarray(w, dtype=np.float64) * len(w) / max(float(np.sum(w)), 1e-12)
    return model.fit(x.astype(np.float32), y, sample_weight=w)


def score_native(model, course: CourseClicks, day: int) -> np.ndarray:
    feats = rankers.features(course, day)
    flat = feats.reshape(-1, feats.shape[-1])
    return model.predict_proba(flat)[:, 1].reshape(feats.shape[:2])


def temporal_scorer(
    courses: Sequence[CourseClicks], *, progress: Callable[[str], None] | None = None
) -> Callable[[CourseClicks, int], np.ndarray]:
    """The evaluation's ``learnloop`` scorer: for (presentation, d) a model fitted on earlier data only."""
    ordered = chronological(courses)
    cache = RowCache()

    def scorer(course: CourseClicks, day: int) -> np.ndarray:
        position = [c.course_id for c in ordered].index(course.course_id)
        plan = [(c, d) for c in ordered[:position] for d in training_cutoffs(c)]
        plan += [(course, d) for d in training_cutoffs(course, before=day)]
        stacked = cache.stack(plan)
        if stacked is None or stacked[1].all() or not stacked[1].any():
            return rankers.popularity_recent(course, day)  # nothing to learn from yet: the cold-start rule
        if progress is not None:
            progress(f"fitting the ranker for {course.course_id} day {day} on {len(stacked[1]):,} rows")
        return score_native(fit(*stacked), course, day)

    return scorer


def feature_frame(feats: np.ndarray) -> pd.DataFrame:
    """Rows of :data:`rankers.FEATURES` as the frame the ONNX graph is fed (one input per feature)."""
    return pd.DataFrame(feats.reshape(-1, feats.shape[-1]).astype(np.float32), columns=list(rankers.FEATURES))
