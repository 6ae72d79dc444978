"""Recommendation baselines, metrics, the served list (cold start, A/B arm, logging) on tiny click frames."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import lockstep_course

from learnloop.errors import InvalidInput
from recommender import api
from recommender._recommend import rankers
from recommender._recommend.clicks import course_clicks
from recommender._recommend.oulad_eval import SCORERS, evaluate_courses, ranking_metrics
from recommender.data import Variant


def tiny_course():
    clicks = pd.DataFrame(
        [  # learner, item, day
            (1, 10, 0),
            (1, 11, 1),
            (2, 10, 0),
            (2, 11, 2),
            (3, 12, 5),
            (3, 10, 6),
            (4, 12, 8),
            (4, 12, 9),
        ],
        columns=["id_student", "id_site", "date"],
    )
    items = pd.DataFrame({"id_site": [10, 11, 12, 13], "activity_type": ["page"] * 4, "week_from": np.nan})
    return course_clicks(clicks, items, course_id="T-1", length_days=20, kinds=("page",))


def test_click_matrix_keeps_first_open_day():
    course = tiny_course()
    assert course.first_click.shape == (4, 4)
    assert course.first_click[3, 2] == 8  # learner 4 opened item 12 on days 8 and 9: first is 8
    assert np.isinf(course.first_click[:, 3]).all()  # item 13 never opened


def test_baselines_use_only_clicks_before_the_cutoff():
    course = tiny_course()
    np.testing.assert_allclose(rankers.popularity(course, 3)[0], [2, 2, 0, 0])
    np.testing.assert_allclose(rankers.popularity(course, 10)[0], [3, 2, 2, 0])
    recent = rankers.popularity_recent(course, 10)[0]  # first opens in days 3..9: item 10 (l3), 12 (l3, l4)
    assert recent[2] > recent[0] > recent[1]
    knn = rankers.itemknn(course, 3)
    assert knn[0, 1] > 0 and knn[0, 2] == 0  # 10 and 11 co-occur; 12 unseen before day 3


def test_ranking_metrics_by_hand():
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    seen = np.array([[True, False, False, False]])
    truth = np.array([[False, False, True, True]])
    ndcg, recall = ranking_metrics(scores, seen, truth, k=2)
    # ranked (seen item skipped): 1, 2 → one hit at rank 2; ideal has two hits at ranks 1, 2
    assert ndcg[0] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert recall[0] == pytest.approx(0.5)


def test_lockstep_course_rewards_recency_and_the_ranker_learns_it():
    report = evaluate_courses([lockstep_course()])
    assert set(report["ndcg@10"]) == set(SCORERS) and report["n_users"] > 100
    ndcg = report["ndcg@10"]
    assert all(0.0 <= v <= 1.0 for v in ndcg.values())
    assert ndcg["popularity_recent"] > ndcg["popularity"] + 0.1  # the weekly rhythm is the signal here
    assert ndcg["learnloop"] > ndcg["popularity"] + 0.1
    # the reference line knows next week's popularity: no same-for-everyone ranking beats it
    oracle = report["oracle_next_week_popularity"]
    assert ndcg["popularity"] < ndcg["popularity_recent"] <= oracle["ndcg@10"] <= 1.0
    assert set(oracle["per_course"]) == set(report["lists_per_course"])
    assert all(ndcg["popularity_recent"] < value <= 1.0 for value in oracle["per_course"].values())


# -- the served list ---------------------------------------------------------------------------------------
def _platform_frames():
    interactions = pd.DataFrame(
        [
            ("u1", "intro", 0),
            ("u1", "week1", 2),
            ("u2", "intro", 1),
            ("u2", "week1", 5),
            ("u2", "week2", 8),
            ("u3", "intro", 7),
            ("u3", "week2", 9),
            ("u4", "week2", 9),
            ("u4", "quiz2", 9),
        ],
        columns=["user_id", "item_id", "day"],
    )
    items = pd.DataFrame(
        {
            "item_id": ["intro", "week1", "week2", "quiz2", "week3"],
            "kind": ["page", "page", "page", "quiz", "page"],
        }
    )
    return interactions, items


def test_cold_start_gets_popularity_within_course_and_week(caplog: pytest.LogCaptureFixture):
    interactions, items = _platform_frames()
    with caplog.at_level(logging.INFO, logger="learnloop.recommender.served"):
        served = api.recommend(
            user_id="newcomer", course_id="c1", interactions=interactions, items=items, day=10
        )
    assert served.cold_start
    assert served.items[0].item_id == "week2"  # 3 first opens in days 3..9
    assert [r.item_id for r in served.items][:2] == [
        "week2",
        "intro",
    ]  # then intro (1), quiz2 (1) by all-time
    record = caplog.records[-1]
    assert record.variant == served.variant.value and record.user_id == "newcomer"
    assert record.items == [r.item_id for r in served.items]


def test_served_list_never_repeats_opened_items_and_follows_the_arm():
    interactions, items = _platform_frames()
    for user in ("u1", "u2", "u3"):
        for share in (0.0, 1.0):
            served = api.recommend(
                user_id=user,
                course_id="c1",
                interactions=interactions,
                items=items,
                day=10,
                treatment_share=share,
            )
            opened = set(interactions.loc[interactions.user_id == user, "item_id"])
            assert not opened & {r.item_id for r in served.items}
            assert served.variant is (Variant.treatment if share == 1.0 else Variant.control)
    with pytest.raises(InvalidInput):
        api.recommend(
            user_id="u1", course_id="c1", interactions=interactions.drop(columns="day"), items=items, day=3
        )


def test_ab_assignment_is_deterministic_share_respecting_and_monotonic():
    users = [f"user-{i}" for i in range(4000)]
    first = [api.assign_variant(u, treatment_share=0.3) for u in users]
    assert first == [api.assign_variant(u, treatment_share=0.3) for u in users]
    share = sum(v is Variant.treatment for v in first) / len(users)
    assert 0.27 < share < 0.33
    assert all(api.assign_variant(u, treatment_share=0.0) is Variant.control for u in users[:200])
    assert all(api.assign_variant(u, treatment_share=1.0) is Variant.treatment for u in users[:200])
    # Raising the share only moves users from control to treatment.
    wider = [api.assign_variant(u, treatment_share=0.6) for u in users]
    assert all(w is Variant.treatment for f, w in zip(first, wider, strict=True) if f is Variant.treatment)
    # Another experiment splits independently.
    other = [api.assign_variant(u, experiment="other", treatment_share=0.3) for u in users]
    assert other != first
    with pytest.raises(InvalidInput):
        api.assign_variant("u", treatment_share=1.5)
