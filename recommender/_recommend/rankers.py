"""Scorers of "which item will this learner open next": two baselines, the cold-start rule and our ranker.

Every scorer maps (course clicks, cutoff day) to a ``learners × items`` score matrix that may only use clicks
strictly before the cutoff. Items a learner already opened are excluded by the caller.

* ``popularity`` — learners who opened the item before the cutoff (the classic baseline).
* ``itemknn`` — item-item cosine on the binary history, summed over the learner's items.
* ``popularity_recent`` — *popularity within course and week*: learners who first opened the item in the
  last 7 days. Courses move in lockstep through weekly material, so this is the strong baseline and our
  cold-start rule.
* ``learnloop_scores`` — popularity within course and week, personalised by first-open transitions; the
  session-1 heuristic, kept as the cheap no-model scorer of tests.
* :func:`features` — what the learned ranker (:mod:`recommender._recommend.learned`) sees per
  (learner, item): cohort trends, the fastest learners' and look-alikes' recent opens, item-item similarity to
  the learner's items, item age, the learner's pace and progress.
"""

from __future__ import annotations

import numpy as np

from recommender._recommend.clicks import CourseClicks

HORIZON_DAYS = 7
FEATURES = (
    "penetration",  # share of active learners who opened the item
    "trend_7d",  # share of last-week-active learners who first opened it in the last 7 days
    "trend_3d",
    "trend_prev_week",
    "itemknn",  # normalised per learner
    "itemknn_recent",  # similarity to the learner's last-week items
    "item_age_days",  # days since anyone first opened it (-1: nobody yet)
    "learner_items",  # items the learner opened so far
    "learner_idle_days",  # days since the learner's last first-open
    "kind_affinity",  # share of the learner's items of this kind
    "position_gap",  # item position in the course order minus the mean of the learner's last-week items
    "planned_week_gap",  # planned week of use minus the current week (NaN when unknown)
    "learner_recent_items",
    "leaders_trend_7d",  # share of the cohort's fastest fifth who first opened it in the last 7 days
    "leaders_trend_3d",
    "growth_3d_7d",  # last-3-day first opens over last-7-day first opens (-1: none in 7 days)
    "trend_14d",
    "trend_rank",  # rank of trend_7d among the course's items (0 = most opened last week)
    "learner_progress",  # share of last week's 20 most opened items the learner has opened
    "learner_earliness",  # mean days the learner opened items before the cohort's median opener
    "userknn_recent",  # last-week first opens of the learner's 50 most similar learners
    "item_median_day_gap",  # median first-open day among the item's openers minus today (999: none)
    "trend_1d",  # share of the last day's active learners who first opened it that day
    "trend_2d",
    "hazard_7d",  # of the learners active so far who had not opened it a week ago, the share who did since
    "hazard_3d",
    "follow_recent",  # first-open transitions (opened within 7 days after) from the learner's last-week items
    "stage_pop",  # share of peers whose next 10 opens, at the learner's count of opened items, included it
    "trend_rank_unseen",  # rank of trend_7d among the items the learner has not opened (0 = top)
    "canon_gap_recent",  # item's median first-open day minus the mean of it over the learner's last-week items
    "canon_gap_max",  # item's median first-open day minus the latest such day among the learner's items
    "sameday_recent",  # same-day co-opening with the learner's last-week items (normalised per learner)
    "sameday_last",  # same-day co-opening with the items of the learner's last active day
    "neigh_opened",  # share of the item's 4 neighbours in course order that the learner opened
)
MISSING = -999.0


def _share(mask: np.ndarray) -> np.ndarray:
    return mask.sum(0) / max(int(mask.any(1).sum()), 1)


def _cosine(history: np.ndarray) -> np.ndarray:
    norm = np.sqrt(history.sum(0)) + 1e-9
    sim = (history.T @ history) / norm[:, None] / norm[None, :]
    np.fill_diagonal(sim, 0.0)
    return sim


def popularity(course: CourseClicks, day: int) -> np.ndarray:
    counts = course.seen(day).sum(0).astype(np.float32)
    return np.broadcast_to(counts, course.first_click.shape)


def popularity_recent(course: CourseClicks, day: int, window: int = HORIZON_DAYS) -> np.ndarray:
    counts = course.first_clicked_between(day - window, day).sum(0).astype(np.float32)
    # Ties (e.g. nothing opened last week) fall back to all-time popularity.
    return np.broadcast_to(
        counts + 1e-3 * course.seen(day).sum(0) / max(len(course.learners), 1), course.first_click.shape
    )


def itemknn(course: CourseClicks, day: int) -> np.ndarray:
    history = course.seen(day).astype(np.float32)
    return history @ _cosine(history)


def features(course: CourseClicks, day: int) -> np.ndarray:
    """``learners × items × len(FEATURES)`` float32, from clicks before ``day`` only."""
    n_learners, n_items = course.first_click.shape
    seen = course.seen(day)
    history = seen.astype(np.float32)
    recent = course.first_clicked_between(day - 7, day)
    sim = _cosine(history)
    knn = history @ sim
    knn /= np.maximum(knn.max(1, keepdims=True), 1e-9)
    recent_f = recent.astype(np.float32)
    knn_recent = recent_f @ sim
    knn_recent /= np.maximum(knn_recent.max(1, keepdims=True), 1e-9)
    first_day = np.where(seen, course.first_click, np.inf).min(0)
    item_age = np.where(np.isfinite(first_day), day - first_day, -1.0)
    learner_items = history.sum(1)
    last_day = np.where(seen, course.first_click, -np.inf).max(1)
    idle = np.where(np.isfinite(last_day), day - last_day, 999.0)
    n_kinds = int(course.item_kind.max()) + 1 if n_items else 1
    kind_onehot = np.zeros((n_items, n_kinds), dtype=np.float32)
    kind_onehot[np.arange(n_items), course.item_kind] = 1.0
    kind_affinity = ((history @ kind_onehot) / np.maximum(learner_items[:, None], 1.0))[:, course.item_kind]
    position = np.arange(n_items, dtype=np.float32) / max(
        n_items, 1
    )  # item ids follow the course build order
    recent_count = recent_f.sum(1)
    mean_position = np.where(recent_count > 0, (recent_f @ position) / np.maximum(recent_count, 1.0), np.nan)
    planned_gap = course.week_from - day // 7

    def per_item(values) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=np.float32), (n_learners, n_items))

    def per_learner(values) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=np.float32)[:, None], (n_learners, n_items))

    columns = [
        per_item(_share(seen)),
        per_item(_share(recent)),
        per_item(_share(course.first_clicked_between(day - 3, day))),
        per_item(_share(course.first_clicked_between(day - 14, day - 7))),
        knn,
        knn_recent,
        per_item(item_age),
        per_learner(learner_items),
        per_learner(idle),
        kind_affinity,
        position[None, :] - mean_position[:, None],
        per_item(planned_gap),
        per_learner(recent_count),
        *_cohort_columns(course, day, per_item, per_learner),
        *_sequence_columns(course, day, per_item),
    ]
    stacked = np.stack(columns, axis=-1).astype(np.float32)
    # Unknown (no planned week, no recent items) is a value of its own; an all-NaN column also breaks binning.
    return np.nan_to_num(stacked, nan=MISSING, posinf=MISSING, neginf=MISSING)


def _cohort_columns(course: CourseClicks, day: int, per_item, per_learner) -> list[np.ndarray]:
    """Where the cohort is heading: what its fastest learners and this learner's look-alikes opened lately."""
    seen = course.seen(day)
    n_learners = seen.shape[0]
    opened = np.where(seen, course.first_click, np.nan)
    has_openers = seen.any(0)
    median_day = np.full(seen.shape[1], np.nan)
    if has_openers.any():
        median_day[has_openers] = np.nanmedian(opened[:, has_openers], axis=0)
    ahead = median_day[None, :] - opened
    counted = np.isfinite(ahead)
    earliness = np.where(counted, ahead, 0.0).sum(1) / np.maximum(counted.sum(1), 1)
    active = course.first_clicked_between(day - 14, day).any(1)
    leaders = active & (earliness >= np.quantile(earliness[active], 0.8)) if active.any() else active
    recent7 = course.first_clicked_between(day - HORIZON_DAYS, day)
    recent3 = course.first_clicked_between(day - 3, day)
    count7, count3 = recent7.sum(0), recent3.sum(0)
    trend7 = _share(recent7)
    order = np.argsort(-trend7, kind="stable")
    rank = np.empty(len(order), dtype=np.float32)
    rank[order] = np.arange(len(order))
    progress = seen[:, order[:20]].mean(1) if len(order) else np.zeros(n_learners)
    history = seen.astype(np.float32)
    norm = np.sqrt(history.sum(1)) + 1e-9
    similar = (history @ history.T) / norm[:, None] / norm[None, :]
    np.fill_diagonal(similar, 0.0)
    if n_learners > 1:
        k = min(50, n_learners - 1)
        kth = -np.sort(-similar, axis=1)[:, k - 1 : k]
        similar = np.where(similar >= kth, similar, 0.0)
    neighbours = similar @ recent7.astype(np.float32)
    neighbours /= np.maximum(neighbours.max(1, keepdims=True), 1e-9)
    return [
        per_item(recent7[leaders].sum(0) / max(int(leaders.sum()), 1)),
        per_item(recent3[leaders].sum(0) / max(int(leaders.sum()), 1)),
        per_item(np.where(count7 > 0, count3 / np.maximum(count7, 1), -1.0)),
        per_item(_share(course.first_clicked_between(day - 14, day))),
        per_item(rank),
        per_learner(progress),
        per_learner(earliness),
        neighbours,
        per_item(np.where(np.isfinite(median_day), median_day - day, 999.0)),
    ]


def _rank_among_unseen(values: np.ndarray, seen: np.ndarray) -> np.ndarray:
    n_learners, n_items = seen.shape
    order = np.argsort(-np.where(seen, -np.inf, values), axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n_learners)[:, None], order] = np.arange(n_items)[None, :]
    return rank.astype(np.float32)


def _sameday_similarity(course: CourseClicks, seen: np.ndarray) -> np.ndarray:
    """Cosine of items over (learner, day) groups: items first opened together in one day (one study block)."""
    n_items = seen.shape[1]
    learner, item = np.nonzero(seen)
    if not len(item):
        return np.zeros((n_items, n_items), dtype=np.float32)
    group_key = learner * 100_000 + (course.first_click[learner, item] + 50_000).astype(np.int64)
    order = np.argsort(group_key, kind="stable")
    key, item = group_key[order], item[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    size_of = np.repeat(sizes, sizes)  # per entry: the size of its group
    start_of = np.repeat(starts, sizes)
    left = np.repeat(np.arange(len(key)), size_of)  # every ordered pair inside a group
    offset = np.arange(len(left)) - np.repeat(np.cumsum(size_of) - size_of, size_of)
    right = np.repeat(start_of, size_of) + offset
    sim = np.bincount(item[left] * n_items + item[right], minlength=n_items * n_items)
    sim = sim.reshape(n_items, n_items).astype(np.float32)
    count = np.sqrt(np.maximum(np.diag(sim).copy(), 1.0))
    np.fill_diagonal(sim, 0.0)
    return sim / count[:, None] / count[None, :]


def _sequence_columns(course: CourseClicks, day: int, per_item) -> list[np.ndarray]:
    """Where this learner is in the course's usual order of opening, and what usually comes next from there."""
    seen = course.seen(day)
    n_learners, n_items = seen.shape
    active = seen.any(1)
    recent7 = course.first_clicked_between(day - HORIZON_DAYS, day)
    recent3 = course.first_clicked_between(day - 3, day)
    hazard7 = recent7.sum(0) / np.maximum((~course.seen(day - HORIZON_DAYS) & active[:, None]).sum(0), 1)
    hazard3 = recent3.sum(0) / np.maximum((~course.seen(day - 3) & active[:, None]).sum(0), 1)
    follow = recent7.astype(np.float32) @ transitions(course, day)
    follow /= np.maximum(follow.max(1, keepdims=True), 1e-9)
    # Peers at the learner's stage: items at positions (n, n + 10] of each peer's own opening order.
    first = np.where(seen, course.first_click, np.inf)
    order = np.argsort(first + np.arange(n_items)[None, :] * 1e-6, axis=1, kind="stable")
    position = np.empty_like(order)
    position[np.arange(n_learners)[:, None], order] = np.arange(1, n_items + 1)[None, :]
    opened_count = seen.sum(1)
    at_position = np.zeros((n_items + 2, n_items), dtype=np.float32)
    learner, item = np.nonzero(seen)
    np.add.at(at_position, (position[learner, item], item), 1.0)
    upto = np.cumsum(at_position, axis=0)
    stage = upto[np.minimum(opened_count + 10, n_items + 1)] - upto[opened_count]
    reached = np.bincount(np.minimum(opened_count, n_items + 1), minlength=n_items + 2)[::-1].cumsum()[::-1]
    stage /= np.maximum(reached[np.minimum(opened_count + 1, n_items + 1)], 1)[:, None]
    trend7 = _share(recent7) + 1e-6 * _share(seen)
    # The course's usual order: median first-open day per item (never opened yet: after everything).
    opened = np.where(seen, course.first_click, np.nan)
    has_openers = seen.any(0)
    median_day = np.full(n_items, day + 30.0)
    if has_openers.any():
        median_day[has_openers] = np.nanmedian(opened[:, has_openers], axis=0)
    recent_count = recent7.sum(1)
    front_recent = np.where(recent_count > 0, (recent7 * median_day).sum(1) / np.maximum(recent_count, 1), np.nan)
    front_max = np.where(active, np.where(seen, median_day, -np.inf).max(1), np.nan)
    last_day = np.where(seen, course.first_click, -np.inf).max(1)
    last_session = seen & (course.first_click == last_day[:, None])
    sameday = _sameday_similarity(course, seen)
    with_recent = recent7.astype(np.float32) @ sameday
    with_recent /= np.maximum(with_recent.max(1, keepdims=True), 1e-9)
    with_last = last_session.astype(np.float32) @ sameday
    with_last /= np.maximum(with_last.max(1, keepdims=True), 1e-9)
    padded = np.pad(seen.astype(np.float32), ((0, 0), (2, 2)))
    neighbours = (padded[:, :n_items] + padded[:, 1 : n_items + 1] + padded[:, 3 : n_items + 3]
                  + padded[:, 4 : n_items + 4]) / 4.0
    return [
        per_item(_share(course.first_clicked_between(day - 1, day))),
        per_item(_share(course.first_clicked_between(day - 2, day))),
        per_item(hazard7),
        per_item(hazard3),
        follow,
        stage,
        _rank_among_unseen(np.broadcast_to(trend7, seen.shape), seen),
        median_day[None, :] - front_recent[:, None],
        median_day[None, :] - front_max[:, None],
        with_recent,
        with_last,
        neighbours,
    ]


def transitions(course: CourseClicks, day: int, horizon: int = HORIZON_DAYS) -> np.ndarray:
    """``T[a, b]``: share of learners who opened ``a`` that first opened ``b`` within ``horizon`` days after."""
    first = np.where(course.first_click < day, course.first_click, np.nan)
    n_items = first.shape[1]
    counts = np.zeros((n_items, n_items), dtype=np.float32)
    for item in range(n_items):
        gap = first - first[:, [item]]
        counts[item] = np.nansum((gap > 0) & (gap <= horizon), axis=0)
    openers = np.sum(~np.isnan(first), axis=0)
    return counts / np.maximum(openers[:, None], 1.0)


def _blend(course: CourseClicks, day: int, weight: float) -> np.ndarray:
    trend = popularity_recent(course, day)
    trend = trend / max(float(trend.max()), 1e-9)
    recent = course.first_clicked_between(day - HORIZON_DAYS, day).astype(np.float32)
    follow = recent @ transitions(course, day)
    follow /= np.maximum(follow.max(1, keepdims=True), 1e-9)
    return trend + weight * follow


BLEND_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def learnloop_scores(course: CourseClicks, day: int) -> np.ndarray:
    """Popularity within course and week, personalised by what learners opened next after this learner's
    last-week items (first-open transitions); the transition weight is chosen on the week before ``day``
    (labels in [day-7, day), so nothing at or after ``day`` is used)."""
    from recommender._recommend.oulad_eval import ranking_metrics

    previous = day - HORIZON_DAYS
    weight = BLEND_WEIGHTS[0]
    if previous > 0:
        seen = course.seen(previous)
        truth = course.first_clicked_between(previous, day) & ~seen
        rows = truth.any(1)
        if rows.any():
            quality = [
                ranking_metrics(_blend(course, previous, w)[rows], seen[rows], truth[rows])[0].mean()
                for w in BLEND_WEIGHTS
            ]
            weight = BLEND_WEIGHTS[int(np.argmax(quality))]
    return _blend(course, day, weight)
