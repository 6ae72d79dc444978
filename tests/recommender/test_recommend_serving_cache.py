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


def _new_activity(interactions, items, learner, opened):
    """The learner opens ``opened``; 40 peers open an item of a later week (course-level features move)."""
    learners = sorted(set(interactions["user_id"]))
    peers = learners[50:90]
    new = pd.DataFrame({"user_id": [learner] * len(opened) + peers,
                        "item_id": list(opened) + [items["item_id"].iloc[30]] * len(peers), "day": DAY - 1})
    return pd.concat([interactions, new], ignore_index=True)


def test_cached_lists_equal_uncached_ones_and_live_activity_is_served_then_refreshed(course_input):
    interactions, items = course_input
    now = [0.0]
    cache = service.CourseCache(refresh_seconds=15.0, clock=lambda: now[0])
    ranker = LinearRanker()
    learners = sorted(set(interactions["user_id"]))
    first, second = learners[3], learners[40]
    for user in (first, second, first):  # the second and third requests reuse the course
        _assert_same(_serve(user, interactions, items, ranker, cache), _serve(user, interactions, items, ranker, None))
    assert (cache.misses, cache.hits) == (1, 2)

    before = _serve(first, interactions, items, ranker, cache)
    top = [r.item_id for r in before.items[:2]]
    later = _new_activity(interactions, items, first, top)
    # Within the refresh interval the entry answers (no rebuild in the request), the learner's new opens applied:
    # the list is the one before, without the two items they just opened.
    now[0] = 5.0
    stale = _serve(first, later, items, ranker, cache)
    assert (cache.misses, cache.stale, cache.refreshes) == (1, 1, 0)
    assert [r.item_id for r in stale.items][:8] == [r.item_id for r in before.items if r.item_id not in top]
    assert len(stale.items) == 10 and not set(top) & {r.item_id for r in stale.items}
    assert stale.model_version == "t" and not stale.cold_start

    # Once the entry is refresh_seconds old, a request with other opens starts one rebuild from its opens, in the
    # background; answered from the entry meanwhile.
    now[0] = 16.0
    _serve(second, later, items, ranker, cache)
    cache.wait_for_refreshes(timeout=60)
    assert (cache.misses, cache.refreshes) == (1, 1)
    after = _serve(first, later, items, ranker, cache)
    assert cache.hits == 4  # the refreshed entry was built from exactly these opens
    _assert_same(after, _serve(first, later, items, ranker, None))
    assert not set(top) & {r.item_id for r in after.items}
    assert _scores(after) != _scores(stale)  # the course-level parts moved with the peers' opens

    # The feature row scored from the cache equals the whole-course features computed from scratch.
    entry = service.course_entry(course_id="C-1", interactions=later, items=items, day=DAY, cache=None)
    np.testing.assert_allclose(ranker.seen[-2], rankers.features(entry.course, DAY)[entry.learner_row[first]],
                               rtol=1e-5, atol=1e-5)


def test_a_learner_whose_first_opens_are_newer_than_the_entry_is_not_a_cold_start(course_input):
    interactions, items = course_input
    cache = service.CourseCache(refresh_seconds=15.0, clock=lambda: 0.0)
    learner = sorted(set(interactions["user_id"]))[0]
    _serve(learner, interactions, items, LinearRanker(), cache)
    opened = list(items["item_id"].iloc[:3])
    later = pd.concat([interactions, pd.DataFrame({"user_id": "newcomer", "item_id": opened, "day": DAY - 1})],
                      ignore_index=True)
    served = _serve("newcomer", later, items, LinearRanker(), cache)
    assert cache.stale == 1 and not served.cold_start and served.model_version is None
    assert "refreshing" in served.fallback
    assert served.items and not set(opened) & {r.item_id for r in served.items}
    fresh = _serve("newcomer", later, items, LinearRanker(), None)  # computed from these opens: the ranker's list
    assert fresh.model_version == "t" and not set(opened) & {r.item_id for r in fresh.items}


def test_a_failed_refresh_keeps_the_entry_answering_and_is_tried_again(course_input, monkeypatch, caplog):
    interactions, items = course_input
    now = [0.0]
    cache = service.CourseCache(refresh_seconds=15.0, clock=lambda: now[0])
    user = sorted(set(interactions["user_id"]))[7]
    _serve(user, interactions, items, None, cache)
    later = _new_activity(interactions, items, user, [])
    build = service._build_course

    def broken(*args, **kwargs):
        raise MemoryError("no room for the click matrix")

    monkeypatch.setattr(service, "_build_course", broken)
    now[0] = 20.0
    assert _serve(user, later, items, None, cache).items
    cache.wait_for_refreshes(timeout=60)
    assert cache.refreshes == 0 and "refreshing the course state of C-1 failed" in caplog.text
    monkeypatch.setattr(service, "_build_course", build)
    assert _serve(user, later, items, None, cache).items  # still answered from the entry; the rebuild is retried
    cache.wait_for_refreshes(timeout=60)
    assert cache.refreshes == 1 and cache.misses == 1


def test_another_day_or_catalog_is_built_in_line_and_entries_expire(course_input):
    interactions, items = course_input
    now = [0.0]
    cache = service.CourseCache(ttl_seconds=300.0, clock=lambda: now[0])
    user = sorted(set(interactions["user_id"]))[7]
    _serve(user, interactions, items, None, cache)
    _serve(user, interactions.iloc[::-1], items, None, cache)  # same opens, other order: another input, answered stale
    assert (cache.misses, cache.hits, cache.stale) == (1, 0, 1)
    service.recommend(user_id=user, course_id="C-1", interactions=interactions, items=items, day=DAY + 1, limit=10,
                      variant=Variant.control, experiment="e", cache=cache)
    assert cache.misses == 2  # the next day is never answered from the day before
    _serve(user, interactions, items.iloc[:-1], None, cache)
    assert cache.misses == 3  # nor another catalog
    now[0] = 299.0
    _serve(user, interactions, items, None, cache)
    assert cache.hits == 1
    now[0] = 301.0  # older than the TTL (a hit does not extend it): built in line
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


def test_a_slow_refresh_never_replaces_an_entry_built_after_it_started(course_input):
    """The refresh started; the entry then expired and a request rebuilt it in line from newer opens. When the
    slow refresh finishes, the newer entry stays."""
    import threading

    interactions, items = course_input
    now = [0.0]
    cache = service.CourseCache(ttl_seconds=30.0, refresh_seconds=15.0, clock=lambda: now[0])
    user = sorted(set(interactions["user_id"]))[7]
    _serve(user, interactions, items, None, cache)
    later = _new_activity(interactions, items, user, [])
    build, release = service._build_course, threading.Event()

    def slow(*args, **kwargs):
        if threading.current_thread().name.startswith("course-refresh"):
            release.wait(60)
        return build(*args, **kwargs)

    service._build_course = slow
    try:
        now[0] = 20.0
        _serve(user, later, items, None, cache)  # starts the refresh (blocked)
        newest = _new_activity(later, items, user, [])
        now[0] = 40.0  # the entry expired: built in line from the newest opens
        _serve(user, newest, items, None, cache)
        release.set()
        cache.wait_for_refreshes(timeout=60)
    finally:
        service._build_course = build
    _serve(user, newest, items, None, cache)
    assert cache.hits == 1  # still the in-line entry (built from `newest`), not the refresh's older one
