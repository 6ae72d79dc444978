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

from dataclasses import dataclass

import numpy as np

from recommender._recommend.clicks import CourseClicks

HORIZON_DAYS = 7
WEEK_DAYS = 7  # the course week of a day: day // WEEK_DAYS (0 = the first, as OULAD week_from)
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
    # From every open, not only first opens (where the learner is now, what they go back to):
    "focus_gap_3d",  # item's usual first-open day minus the mean of it over the items the learner opened in 3 days
    "focus_gap_7d",
    "focus_sim_7d",  # item-item similarity to the items the learner opened in the last 7 days (normalised per learner)
    "item_open_days_7d",  # log(1 + learner-days with an open of the item in the last 7 days)
    "learner_open_days_7d",  # log(1 + item-days the learner opened something in the last 7 days)
    "item_content_kind",  # the item's platform content kind (CONTENT_KIND_CODE; OULAD activity types mapped to it)
)
MISSING = -999.0
# Platform content kinds (platform_api ContentKind values) as codes: a vocabulary both OULAD training and platform
# serving share (OULAD activity types, and any other name, map onto it as the OULAD import stores them: pages,
# forums, quizzes … are text); items of no known kind are 5.
CONTENT_KIND_CODE = {"text": 0, "video": 1, "audio": 2, "document": 3, "link": 4}


def content_kind_codes(kinds: tuple[str, ...]) -> np.ndarray:
    """Code per entry of a course's ``kinds`` (platform kinds as they are, OULAD activity types mapped), plus one
    for items of unknown kind (``item_kind == len(kinds)``)."""
    from learnloop.datasets import content_kind

    unknown = len(CONTENT_KIND_CODE)
    codes = [CONTENT_KIND_CODE.get(kind, CONTENT_KIND_CODE.get(content_kind(kind), unknown)) for kind in kinds]
    return np.asarray([*codes, unknown], dtype=np.float32)


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
    return learner_features(course_state(course, day), np.arange(len(course.learners)))


@dataclass(frozen=True)
class CourseState:
    """The course-level parts of :func:`features` at one cutoff, shared by every learner of the course.

    Everything here costs O(learners × items) or O(items²) and is the same for every learner: the click matrix
    cut at ``day``, item-item cosine and same-day similarity, first-open transitions, per-item trends and hazards,
    the course's usual order and each learner's earliness (for the cohort's fastest fifth). Serving builds it once
    per course and input (:mod:`recommender._recommend.service`) and scores one learner with
    :func:`learner_features`; training and evaluation go through the same two functions for every learner.
    """

    day: int
    first_click: np.ndarray
    seen: np.ndarray
    history: np.ndarray  # seen as float32
    recent_f: np.ndarray  # first opened in the last 7 days, float32
    sim: np.ndarray  # item-item cosine on the history
    item_kind: np.ndarray
    kind_onehot: np.ndarray
    position: np.ndarray  # item position in the course order (0 … 1)
    order: np.ndarray  # items by last-week trend, most opened first
    earliness: np.ndarray  # per learner
    learner_norm: np.ndarray  # per learner: sqrt(items opened) (learner-learner cosine)
    transitions: np.ndarray
    upto: np.ndarray  # cumulative opens per (position in a learner's own order, item)
    reached: np.ndarray  # learners who opened at least n items
    trend_for_rank: np.ndarray
    median_day: np.ndarray  # usual first-open day per item (never opened: day + 30)
    sameday: np.ndarray
    open_days_7d: np.ndarray  # per (learner, item): days with an open in the last 7 days
    opened_3d: np.ndarray  # per (learner, item): opened in the last 3 days
    item_columns: dict[str, np.ndarray]  # the features that only depend on the item


_LEARNER_COLUMNS = ("learner_items", "learner_idle_days", "learner_recent_items", "learner_progress",
                    "learner_earliness", "learner_open_days_7d")
_INDEX = {name: i for i, name in enumerate(FEATURES)}


def course_state(course: CourseClicks, day: int) -> CourseState:
    """The learner-independent parts of the features at ``day`` (clicks before ``day`` only)."""
    n_learners, n_items = course.first_click.shape
    seen = course.seen(day)
    history = seen.astype(np.float32)
    recent7 = course.first_clicked_between(day - HORIZON_DAYS, day)
    recent3 = course.first_clicked_between(day - 3, day)
    first_day = np.where(seen, course.first_click, np.inf).min(0)
    n_kinds = int(course.item_kind.max()) + 1 if n_items else 1
    kind_onehot = np.zeros((n_items, n_kinds), dtype=np.float32)
    kind_onehot[np.arange(n_items), course.item_kind] = 1.0
    position = np.arange(n_items, dtype=np.float32) / max(n_items, 1)  # item ids follow the course build order
    # Cohort: the cohort's fastest fifth, trends, usual first-open day.
    opened = np.where(seen, course.first_click, np.nan)
    has_openers = seen.any(0)
    median_day = np.full(n_items, np.nan)
    if has_openers.any():
        median_day[has_openers] = np.nanmedian(opened[:, has_openers], axis=0)
    ahead = median_day[None, :] - opened
    counted = np.isfinite(ahead)
    earliness = np.where(counted, ahead, 0.0).sum(1) / np.maximum(counted.sum(1), 1)
    active14 = course.first_clicked_between(day - 14, day).any(1)
    leaders = active14 & (earliness >= np.quantile(earliness[active14], 0.8)) if active14.any() else active14
    count7, count3 = recent7.sum(0), recent3.sum(0)
    trend7 = _share(recent7)
    order = np.argsort(-trend7, kind="stable")
    rank = np.empty(len(order), dtype=np.float32)
    rank[order] = np.arange(len(order))
    # Sequence: hazards, peers' opens at each stage, the course's usual order.
    active = seen.any(1)
    hazard7 = recent7.sum(0) / np.maximum((~course.seen(day - HORIZON_DAYS) & active[:, None]).sum(0), 1)
    hazard3 = recent3.sum(0) / np.maximum((~course.seen(day - 3) & active[:, None]).sum(0), 1)
    first = np.where(seen, course.first_click, np.inf)
    own_order = np.argsort(first + np.arange(n_items)[None, :] * 1e-6, axis=1, kind="stable")
    own_position = np.empty_like(own_order)
    own_position[np.arange(n_learners)[:, None], own_order] = np.arange(1, n_items + 1)[None, :]
    at_position = np.zeros((n_items + 2, n_items), dtype=np.float32)
    learner, item = np.nonzero(seen)
    np.add.at(at_position, (own_position[learner, item], item), 1.0)
    opened_count = seen.sum(1)
    usual_day = np.full(n_items, day + 30.0)
    if has_openers.any():
        usual_day[has_openers] = median_day[has_openers]
    n_leaders = max(int(leaders.sum()), 1)
    open_days_7d = course.open_days_between(day - HORIZON_DAYS, day)
    item_columns = {
        "penetration": _share(seen),
        "trend_7d": trend7,
        "trend_3d": _share(recent3),
        "trend_prev_week": _share(course.first_clicked_between(day - 14, day - 7)),
        "item_age_days": np.where(np.isfinite(first_day), day - first_day, -1.0),
        "planned_week_gap": course.week_from - day // WEEK_DAYS,
        "leaders_trend_7d": recent7[leaders].sum(0) / n_leaders,
        "leaders_trend_3d": recent3[leaders].sum(0) / n_leaders,
        "growth_3d_7d": np.where(count7 > 0, count3 / np.maximum(count7, 1), -1.0),
        "trend_14d": _share(course.first_clicked_between(day - 14, day)),
        "trend_rank": rank,
        "item_median_day_gap": np.where(np.isfinite(median_day), median_day - day, 999.0),
        "trend_1d": _share(course.first_clicked_between(day - 1, day)),
        "trend_2d": _share(course.first_clicked_between(day - 2, day)),
        "hazard_7d": hazard7,
        "hazard_3d": hazard3,
        "item_open_days_7d": np.log1p(open_days_7d.sum(0)),
        "item_content_kind": content_kind_codes(course.kinds)[course.item_kind],
    }
    return CourseState(
        day=day,
        first_click=course.first_click,
        seen=seen,
        history=history,
        recent_f=recent7.astype(np.float32),
        sim=_cosine(history),
        item_kind=course.item_kind,
        kind_onehot=kind_onehot,
        position=position,
        order=order,
        earliness=earliness,
        learner_norm=np.sqrt(history.sum(1)) + 1e-9,
        transitions=transitions(course, day),
        upto=np.cumsum(at_position, axis=0),
        reached=np.bincount(np.minimum(opened_count, n_items + 1), minlength=n_items + 2)[::-1].cumsum()[::-1],
        trend_for_rank=_share(recent7) + 1e-6 * _share(seen),
        median_day=usual_day,
        sameday=_sameday_similarity(course, seen),
        open_days_7d=open_days_7d,
        opened_3d=course.open_days_between(day - 3, day) > 0,
        item_columns=item_columns,
    )


def _row_normalised(values: np.ndarray) -> np.ndarray:
    values /= np.maximum(values.max(1, keepdims=True), 1e-9)
    return values


def learner_features(state: CourseState, rows) -> np.ndarray:
    """``len(rows) × items × len(FEATURES)`` float32: the features of the learners at matrix rows ``rows``.

    Costs O(len(rows) × (learners + items) × items) on top of the state, so one learner is milliseconds where
    the whole course is most of a second. ``features(course, day)[rows]`` equals this up to float summation
    order in the matrix products (the same expressions, restricted to the rows)."""
    rows = np.asarray(rows, dtype=np.intp)
    n_learners, n_items = state.seen.shape
    k = len(rows)
    seen = state.seen[rows]
    history = state.history[rows]
    recent_f = state.recent_f[rows]
    first_click = state.first_click[rows]
    out = np.empty((k, n_items, len(FEATURES)), dtype=np.float32)
    for name, values in state.item_columns.items():
        out[:, :, _INDEX[name]] = np.asarray(values, dtype=np.float32)[None, :]

    learner_items = history.sum(1)
    last_day = np.where(seen, first_click, -np.inf).max(1)
    recent_count = recent_f.sum(1)
    progress = seen[:, state.order[:20]].mean(1) if len(state.order) else np.zeros(k)
    learner_values = {
        "learner_items": learner_items,
        "learner_idle_days": np.where(np.isfinite(last_day), state.day - last_day, 999.0),
        "learner_recent_items": recent_count,
        "learner_progress": progress,
        "learner_earliness": state.earliness[rows],
        "learner_open_days_7d": np.log1p(state.open_days_7d[rows].sum(1)),
    }
    for name in _LEARNER_COLUMNS:
        out[:, :, _INDEX[name]] = np.asarray(learner_values[name], dtype=np.float32)[:, None]

    out[:, :, _INDEX["itemknn"]] = _row_normalised(history @ state.sim)
    out[:, :, _INDEX["itemknn_recent"]] = _row_normalised(recent_f @ state.sim)
    kind_share = (history @ state.kind_onehot) / np.maximum(learner_items[:, None], 1.0)
    out[:, :, _INDEX["kind_affinity"]] = kind_share[:, state.item_kind]
    mean_position = np.where(recent_count > 0, (recent_f @ state.position) / np.maximum(recent_count, 1.0), np.nan)
    out[:, :, _INDEX["position_gap"]] = state.position[None, :] - mean_position[:, None]
    # Look-alikes: the learner's 50 most similar learners (cosine of histories) and what they opened last week.
    similar = (history @ state.history.T) / state.learner_norm[rows][:, None] / state.learner_norm[None, :]
    similar[np.arange(k), rows] = 0.0
    if n_learners > 1 and k:
        top = min(50, n_learners - 1)
        kth = -np.sort(-similar, axis=1)[:, top - 1 : top]
        similar = np.where(similar >= kth, similar, 0.0)
    out[:, :, _INDEX["userknn_recent"]] = _row_normalised(similar @ state.recent_f)

    out[:, :, _INDEX["follow_recent"]] = _row_normalised(recent_f @ state.transitions)
    opened_count = seen.sum(1)
    stage = state.upto[np.minimum(opened_count + 10, n_items + 1)] - state.upto[opened_count]
    stage /= np.maximum(state.reached[np.minimum(opened_count + 1, n_items + 1)], 1)[:, None]
    out[:, :, _INDEX["stage_pop"]] = stage
    out[:, :, _INDEX["trend_rank_unseen"]] = _rank_among_unseen(np.broadcast_to(state.trend_for_rank, seen.shape),
                                                                seen)
    recent7 = recent_f > 0
    n_recent = recent7.sum(1)
    front_recent = np.where(n_recent > 0, (recent7 * state.median_day).sum(1) / np.maximum(n_recent, 1), np.nan)
    front_max = np.where(seen.any(1), np.where(seen, state.median_day, -np.inf).max(1), np.nan)
    out[:, :, _INDEX["canon_gap_recent"]] = state.median_day[None, :] - front_recent[:, None]
    out[:, :, _INDEX["canon_gap_max"]] = state.median_day[None, :] - front_max[:, None]
    last_session = seen & (first_click == last_day[:, None])
    out[:, :, _INDEX["sameday_recent"]] = _row_normalised(recent_f @ state.sameday)
    out[:, :, _INDEX["sameday_last"]] = _row_normalised(last_session.astype(np.float32) @ state.sameday)
    padded = np.pad(seen.astype(np.float32), ((0, 0), (2, 2)))
    out[:, :, _INDEX["neigh_opened"]] = (padded[:, :n_items] + padded[:, 1 : n_items + 1]
                                         + padded[:, 3 : n_items + 3] + padded[:, 4 : n_items + 4]) / 4.0
    opened_7d = state.open_days_7d[rows] > 0
    for name, opened in (("focus_gap_3d", state.opened_3d[rows]), ("focus_gap_7d", opened_7d)):
        n_opened = opened.sum(1)
        focus = np.where(n_opened > 0, (opened * state.median_day).sum(1) / np.maximum(n_opened, 1), np.nan)
        out[:, :, _INDEX[name]] = state.median_day[None, :] - focus[:, None]
    out[:, :, _INDEX["focus_sim_7d"]] = _row_normalised(opened_7d.astype(np.float32) @ state.sim)
    # Unknown (no planned week, no recent items) is a value of its own; an all-NaN column also breaks binning.
    return np.nan_to_num(out, nan=MISSING, posinf=MISSING, neginf=MISSING, copy=False)


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
