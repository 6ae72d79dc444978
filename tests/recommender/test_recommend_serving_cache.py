"""Serving reuses course-level work across requests: cached lists equal uncached ones, also after new activity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import lockstep_course

from recommender._recommend import rankers, service
from recommender._recommend.bench import synthetic_course
from recommender.data import Variant

DAY = 60


class LinearRanker:
    """Scores with fixed random weights over every feature (so any feature that differs moves the scores) and keeps
    the feature rows it was given. A test scorer, not the served model: the ONNX path is covered by
    test_recommend_ranker.py; here what matters is that cached and uncached features agree."""

    version = "t"

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).normal(size=len(rankers.FEATURES))
        self.seen: list[np.ndarray] = []

    def score(self, feats: np.ndarray) -> np.ndarray:
        self.seen.append(np.array(feats))
        return np.tanh(np.asarray(feats, dtype=float) / 10.0) @ self.weights


def _serve(user, interactions, items, ranker, cache):
    return service.recommend(user_id=user, course_id="C-1", interactions=interactions, items=items, day=DAY,
                             limit=10, variant=Variant.treatment, experiment="e", ranker=ranker, cache=cache)


def _scores(served) -> list[tuple[str, float]]:
    return [(r.item_id, r.score) for r in served.items]


def _assert_same(cached, uncached):
    assert [i for i, _ in _scores(cached)] == [i for i, _ in _scores(uncached)]
    np.testing.assert_allclose([s for _, s in _scores(cached)], [s for _, s in _scores(uncached)], rtol=1e-5,
                               atol=1e-6)


@pytest.fixture()
def course_input():
    return synthetic_course(n_learners=120, n_items=45, day=DAY, length_days=120, seed=5)


def test_cached_lists_equal_uncached_ones_before_and_after_new_events(course_input):
    interactions, items = course_input
    cache = service.CourseCache()
    ranker = LinearRanker()
    learners = sorted(set(interactions["user_id"]))
    first, second = learners[3], learners[40]
    for user in (first, second, first):  # the second and third requests reuse the course
        _assert_same(_serve(user, interactions, items, ranker, cache), _serve(user, interactions, items, ranker, None))
    assert (cache.misses, cache.hits) == (1, 2)

    before = _serve(first, interactions, items, ranker, cache)
    # New activity: the learner opens the top two items they were recommended, peers open items of the next week.
    top = [r.item_id for r in before.items[:2]]
    peers = learners[50:90]
    new = pd.DataFrame({"user_id": [first] * 2 + peers, "item_id": top + [items["item_id"].iloc[30]] * len(peers),
                        "day": DAY - 1})
    later = pd.concat([interactions, new], ignore_index=True)
    after = _serve(first, later, items, ranker, cache)
    assert cache.misses == 2  # a new input is a new course entry, not the stale one
    _assert_same(after, _serve(first, later, items, ranker, None))
    assert not set(top) & {r.item_id for r in after.items}  # opened items are gone from the list
    assert _scores(after) != _scores(before)

    # The feature row scored from the cache equals the whole-course features computed from scratch.
    entry = service.course_entry(course_id="C-1", interactions=later, items=items, day=DAY, cache=None)
    row = entry.learner_row[first]
    _serve(first, later, items, ranker, cache)
    np.testing.assert_allclose(ranker.seen[-1], rankers.features(entry.course, DAY)[row], rtol=1e-5, atol=1e-5)


def test_an_input_reordered_or_with_another_day_is_a_new_entry_and_entries_expire(course_input):
    interactions, items = course_input
    now = [0.0]
    cache = service.CourseCache(ttl_seconds=30.0, clock=lambda: now[0])
    user = sorted(set(interactions["user_id"]))[7]
    _serve(user, interactions, items, None, cache)
    _serve(user, interactions.iloc[::-1], items, None, cache)  # same opens, other order: rebuilt, never wrong
    assert (cache.misses, cache.hits) == (2, 0)
    service.recommend(user_id=user, course_id="C-1", interactions=interactions, items=items, day=DAY + 1, limit=10,
                      variant=Variant.control, experiment="e", cache=cache)
    assert cache.misses == 3
    now[0] = 29.0
    _serve(user, interactions, items, None, cache)
    assert cache.hits == 1
    now[0] = 61.0  # 32 s after it was built (the hit does not extend the TTL)
    _serve(user, interactions, items, None, cache)
    assert cache.misses == 4


def test_cache_keeps_at_most_its_size_least_recently_used_out(course_input):
    interactions, items = course_input
    cache = service.CourseCache(size=2)
    user = sorted(set(interactions["user_id"]))[0]
    for course_id in ("A", "B", "A", "C", "A", "B"):
        service.recommend(user_id=user, course_id=course_id, interactions=interactions, items=items, day=DAY,
                          limit=5, variant=Variant.control, experiment="e", cache=cache)
    assert (cache.misses, cache.hits) == (4, 2)  # B was evicted by C, A stayed (recently used)


@pytest.mark.parametrize("day", [0, 9, 33, 60, 150])
def test_one_learners_features_equal_the_whole_course_row(day):
    course = lockstep_course(n_learners=70, n_items=35, seed=11)
    whole = rankers.features(course, day)
    state = rankers.course_state(course, day)
    for row in (0, 13, 69):
        np.testing.assert_allclose(rankers.learner_features(state, [row])[0], whole[row], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rankers.learner_features(state, np.arange(70)), whole)


def test_cold_start_and_control_come_from_the_cached_popularity(course_input):
    interactions, items = course_input
    cache = service.CourseCache()
    cold = service.recommend(user_id="newcomer", course_id="C-1", interactions=interactions, items=items, day=DAY,
                             limit=5, variant=Variant.treatment, experiment="e", ranker=LinearRanker(), cache=cache)
    assert cold.cold_start and cold.model_version is None
    uncached = service.recommend(user_id="newcomer", course_id="C-1", interactions=interactions, items=items,
                                 day=DAY, limit=5, variant=Variant.treatment, experiment="e", cache=None)
    assert _scores(cold) == _scores(uncached)
    entry = service.course_entry(course_id="C-1", interactions=interactions, items=items, day=DAY, cache=cache)
    assert entry.state is None  # popularity requests never build the ranker's course state
