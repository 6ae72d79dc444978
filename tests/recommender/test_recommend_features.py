"""The ranker's features: point-in-time (nothing at or after the cutoff leaks in) and the sequence features by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import lockstep_course

from recommender._recommend import rankers
from recommender._recommend.clicks import course_clicks


def _course(rows, n_items=4, length=30):
    clicks = pd.DataFrame(rows, columns=["id_student", "id_site", "date"])
    items = pd.DataFrame({"id_site": np.arange(n_items), "activity_type": "page", "week_from": np.nan})
    return course_clicks(clicks, items, course_id="F-1", length_days=length, kinds=("page",))


@pytest.mark.parametrize("day", [7, 20, 41])
def test_features_ignore_everything_at_or_after_the_cutoff(day):
    course = lockstep_course(n_learners=40, n_items=30, seed=7)
    rng = np.random.default_rng(day)
    later = course.first_click >= day
    shuffled = np.where(later, day + rng.integers(0, 30, size=later.shape), course.first_click)
    shuffled = np.where(later & (rng.random(later.shape) < 0.3), np.inf, shuffled)  # some never happen
    revisits = np.where(course.open_day >= day, day + rng.integers(0, 30, size=course.open_day.shape), course.open_day)
    changed = dataclasses.replace(course, first_click=shuffled, open_day=revisits)
    assert not np.array_equal(changed.first_click, course.first_click)
    assert not np.array_equal(changed.open_day, course.open_day)
    np.testing.assert_array_equal(rankers.features(changed, day), rankers.features(course, day))
    assert rankers.features(course, day).shape[-1] == len(rankers.FEATURES)


def test_sameday_similarity_counts_items_opened_on_the_same_day_by_the_same_learner():
    course = _course([(1, 0, 2), (1, 1, 2), (1, 2, 5), (2, 0, 3), (2, 1, 3), (2, 2, 3), (3, 3, 4)])
    sim = rankers._sameday_similarity(course, course.seen(10))
    # groups: l1 d2 {0,1}, l1 d5 {2}, l2 d3 {0,1,2}, l3 d4 {3}; cosine over groups
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(2 * 2))
    assert sim[0, 2] == pytest.approx(1 / np.sqrt(2 * 2))
    assert sim[0, 3] == 0 and sim[3, 3] == 0 and np.allclose(sim, sim.T)


def test_stage_popularity_is_what_peers_opened_after_as_many_items():
    # Learners 1 and 2 opened items in the order 0, 1, 2, 3; learner 3 opened only item 0.
    rows = [(1, 0, 0), (1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 0, 0), (2, 1, 2), (2, 2, 4), (2, 3, 6), (3, 0, 1)]
    course = _course(rows)
    feats = rankers.features(course, 10)
    stage = feats[..., rankers.FEATURES.index("stage_pop")]
    learner3 = 2
    # learner 3 has one item: peers' 2nd…11th opens are items 1, 2, 3 for both peers that got that far.
    np.testing.assert_allclose(stage[learner3], [0.0, 1.0, 1.0, 1.0])
    gap = feats[..., rankers.FEATURES.index("canon_gap_max")]
    assert gap[learner3, 3] > gap[learner3, 1] > 0  # item 3 is further along the usual order than item 1


def test_row_cap_keeps_positives_and_never_drops_every_negative():
    from types import SimpleNamespace

    from recommender._recommend import learned

    cache = learned.RowCache()
    course = SimpleNamespace(course_id="F-1")
    y = np.r_[np.ones(700, dtype=bool), np.zeros(300, dtype=bool)]  # more positives than half the cap
    cache._rows[("F-1", 3)] = (np.arange(1000, dtype=np.float32)[:, None], y, np.ones(1000, dtype=np.float32))
    x_small, y_small, w_small = cache.stack([(course, 3)], max_rows=400)
    assert len(x_small) == len(w_small) == 400
    assert len(y_small) == 400 and y_small.sum() == 200 and (~y_small).sum() == 200
    y2 = np.r_[np.ones(100, dtype=bool), np.zeros(900, dtype=bool)]
    cache._rows[("F-1", 6)] = (np.arange(1000, dtype=np.float32)[:, None], y2, np.ones(1000, dtype=np.float32))
    _, y_kept, _ = cache.stack([(course, 6)], max_rows=400)
    assert y_kept.sum() == 100 and len(y_kept) == 400  # every positive kept, negatives thinned


def test_focus_features_follow_what_the_learner_went_back_to_not_only_first_opens():
    # Learners 1 and 2 open items 0…3 on days 0…3; learner 1 goes back to item 0 on day 8, twice that day.
    rows = [(learner, i, i) for learner in (1, 2) for i in range(4)] + [(1, 0, 8), (1, 0, 8)]
    course = _course(rows)
    np.testing.assert_array_equal(course.open_days_between(8, 9)[0], [1, 0, 0, 0])  # days, not clicks
    assert course.open_days_between(0, 10).sum() == 9
    feats = rankers.features(course, 10)
    focus = feats[..., rankers.FEATURES.index("focus_gap_3d")]
    # Learner 1's focus is item 0 (usual day 0): item 3 is 3 days further on. Learner 2 opened nothing lately.
    np.testing.assert_allclose(focus[0], [0.0, 1.0, 2.0, 3.0])
    assert (focus[1] == rankers.MISSING).all()
    learner_days = feats[..., rankers.FEATURES.index("learner_open_days_7d")]
    # Last 7 days ([3, 10)): learner 1 opened item 3 (day 3) and item 0 (day 8), learner 2 item 3 (day 3).
    assert learner_days[0, 0] == pytest.approx(np.log1p(2)) and learner_days[1, 0] == pytest.approx(np.log1p(1))
    assert feats[0, :, rankers.FEATURES.index("item_open_days_7d")] == pytest.approx(np.log1p([1, 0, 0, 2]))


def test_item_kind_is_the_platform_content_kind_with_oulad_activity_types_mapped():
    from platform_api.data import ContentKind

    # every platform kind has its own code; OULAD activity types get the kind the OULAD import stores
    assert sorted(rankers.CONTENT_KIND_CODE) == sorted(kind.value for kind in ContentKind)
    codes = rankers.content_kind_codes(("oucontent", "url", "forumng", "video", "document", "hologram"))
    text, document, link, video = (rankers.CONTENT_KIND_CODE[k] for k in ("text", "document", "link", "video"))
    np.testing.assert_array_equal(codes, [document, link, text, video, document, text, 5])  # unknown names: as the import
    clicks = pd.DataFrame([(1, 0, 0), (1, 1, 1), (2, 2, 1)], columns=["id_student", "id_site", "date"])
    items = pd.DataFrame({"id_site": [0, 1, 2], "activity_type": ["oucontent", "url", "quiz"], "week_from": np.nan})
    course = course_clicks(clicks, items, course_id="K-1", length_days=9, kinds=("oucontent", "quiz", "url"))
    feats = rankers.features(course, 5)
    np.testing.assert_array_equal(feats[0, :, rankers.FEATURES.index("item_content_kind")], [document, link, text])
