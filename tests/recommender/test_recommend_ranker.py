"""The learned ranker end to end (fit → ONNX → MLflow champion → served torch-free) and platform events as its
training data (opens → interactions, served lists + opens → clicked/completed feedback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from recommend_fixtures import lockstep_course

from learnloop.events import Event
from recommender import api
from recommender._recommend import learned, platform_events, rankers
from recommender.data import Variant


def _frames_of(course) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A CourseClicks as the platform-shaped frames ``recommend`` takes."""
    learner, item = np.nonzero(np.isfinite(course.first_click))
    interactions = pd.DataFrame({
        "user_id": [f"u{course.learners[i]}" for i in learner],
        "item_id": [f"i{course.items[j]}" for j in item],
        "day": course.first_click[learner, item].astype(int),
    })
    items = pd.DataFrame({"item_id": [f"i{j}" for j in course.items], "kind": "page"})
    return interactions, items


def test_chronological_order_follows_the_presentation_code():
    courses = [lockstep_course(course_id=c) for c in ("AAA-2014J", "AAA-2013J", "BBB-2013B")]
    assert [c.course_id for c in learned.chronological(courses)] == ["BBB-2013B", "AAA-2013J", "AAA-2014J"]
    assert learned.training_cutoffs(courses[0], before=30) == [3, 6, 9, 12, 15, 18, 21]  # label weeks end by day 30


@pytest.mark.slow  # MLflow registry on SQLite + an ONNX export: ~30 s on a quiet machine
def test_ranker_fits_exports_registers_and_is_served_from_the_champion(settings, monkeypatch):
    from recommender._recommend.train import train_ranker

    courses = [lockstep_course(n_learners=40, n_items=30, seed=s, course_id=c)
               for s, c in ((1, "X-2013B"), (2, "X-2013J"), (3, "X-2014J"))]
    interactions, items = _frames_of(courses[-1])
    day = 60
    user = next(u for u in interactions["user_id"].unique()
                if api.assign_variant(u, treatment_share=1.0) is Variant.treatment)

    api.reset_ranker_cache()
    before = api.recommend(user_id=user, course_id="c", interactions=interactions, items=items, day=day,
                           treatment_share=1.0, settings=settings)
    assert before.variant is Variant.treatment and before.model_version is None
    assert before.fallback and "no 'recommender' champion" in before.fallback
    assert before.items and before.items[0].reason == "popular in this course this week"

    report = train_ranker(courses, settings=settings)
    metrics = report["metrics"]
    assert report["version"] == "1" and report["promotion"] == "promoted", report
    assert metrics["onnx_parity_max_abs_diff"] <= 1e-5
    assert metrics["ndcg_at_10"] > 0.5  # lockstep release: the week's trend is learnable
    # The fitted native model is logged beside the ONNX graph and agrees with it (audit / mlflow models serve).
    import mlflow.pyfunc

    import models.api as models_api
    from training.api import list_models

    (registered,) = list_models("recommender", settings=settings)
    rows = pd.DataFrame(np.random.default_rng(0).random((20, len(rankers.FEATURES))).astype(np.float32),
                        columns=list(rankers.FEATURES))
    native = np.asarray(mlflow.pyfunc.load_model(registered.tags["native_model_uri"]).predict(rows))[:, 1]
    champion = models_api.load_champion_onnx("recommender", settings=settings)
    onnx = models_api.OnnxClassifier(champion.onnx_bytes, champion.schema).predict_proba(rows)
    np.testing.assert_allclose(native, onnx, atol=1e-5)

    loads = []
    import models.api

    real_load = models.api.load_champion_onnx
    monkeypatch.setattr(models.api, "load_champion_onnx", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    api.reset_ranker_cache()
    served = [api.recommend(user_id=user, course_id="c", interactions=interactions, items=items, day=day,
                            treatment_share=1.0, settings=settings) for _ in range(3)]
    assert len(loads) == 1  # loaded once, then cached
    # What the model service's /admin/models reports of the ranker: the loaded champion and its input count.
    status = api.ranker_status(settings=settings)
    assert (status.resolved, status.version, status.n_inputs) == (True, "1", len(rankers.FEATURES))
    assert status.loaded_at and status.reason is None
    api.ranker_status(settings=settings, resolve=True)  # an operator's reload: same version, nothing reloaded
    assert len(loads) == 2 and api.ranker_status(settings=settings).loaded_at == status.loaded_at
    after = served[0]
    assert after.model_version == "1" and after.fallback is None
    assert all(r.reason == "learnloop ranker v1" for r in after.items)
    opened = set(interactions.loc[(interactions.user_id == user) & (interactions.day < day), "item_id"])
    assert not opened & {r.item_id for r in after.items}
    scores = [r.score for r in after.items]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.0 and max(scores) <= 1.0
    # The model service's wire form (serving.api.encode_opens → /recommend's columnar Opens) decodes to a frame the
    # ranker scores identically; computed from scratch, not from the course cache.
    import json

    from recommender._recommend.service import COURSE_CACHE
    from serving.api import encode_opens
    from serving.data import Opens

    wire = Opens.model_validate_json(json.dumps(encode_opens(interactions))).frame()
    COURSE_CACHE.clear()
    assert api.recommend(user_id=user, course_id="c", interactions=wire, items=items, day=day,
                         treatment_share=1.0, settings=settings) == after
    # Control and cold start never touch the model.
    cold = api.recommend(user_id="newcomer", course_id="c", interactions=interactions, items=items, day=day,
                         treatment_share=1.0, settings=settings)
    assert cold.cold_start and cold.model_version is None and cold.fallback is None


def test_the_ranker_beats_weekly_popularity_when_learners_move_at_their_own_pace():
    """Lagging learners open what the cohort opened earlier; the learned ranker sees the learner's pace."""
    courses = [lockstep_course(seed=s, course_id=c, lag_days=12) for s, c in ((4, "Y-2013B"), (5, "Y-2013J"))]
    scorer = learned.temporal_scorer(courses)
    course, ours, baseline, n = courses[1], 0.0, 0.0, 0
    from recommender._recommend.oulad_eval import ranking_metrics

    for day in (56, 84):
        seen = course.seen(day)
        truth = course.first_clicked_between(day, day + 7) & ~seen
        rows = truth.any(1)
        ours += ranking_metrics(scorer(course, day)[rows], seen[rows], truth[rows])[0].sum()
        baseline += ranking_metrics(rankers.popularity_recent(course, day)[rows], seen[rows], truth[rows])[0].sum()
        n += rows.sum()
    assert ours / n > baseline / n + 0.05


def _event(kind: str, user: str, minutes: int, **payload) -> Event:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    return Event(event_type=kind, user_id=user, course_id="course-1", timestamp=start + timedelta(minutes=minutes),
                 payload=payload)


def test_platform_events_become_interactions_and_attributed_feedback():
    events = [
        _event("content_view", "u2", 0, content_id="a"),
        _event("recommendations.served", "u1", 10, experiment="recommender-v1", variant="treatment",
               items=["a", "b"]),
        _event("content_view", "u1", 20, content_id="a"),  # clicked a recommended item
        _event("video_complete", "u1", 60 * 24 * 3, content_id="b"),  # completed one, three days later
        _event("content_view", "u1", 60 * 24 * 3 + 1, content_id="c"),  # not recommended
        _event("forum_post", "u1", 99, content_id="a"),  # not an open
        _event("recommendations.served", "u2", 5, experiment="recommender-v1", variant="control", items=["c"]),
    ]
    raw = [e.model_dump_json() for e in events]  # what a JSONL export of the stream holds
    rows = platform_events.interactions(raw)
    assert len(rows) == 4 and set(rows["event_type"]) == {"content_view", "video_complete"}
    assert rows.loc[rows.item_id == "b", "day"].item() == 3 and rows["day"].min() == 0
    fb = platform_events.feedback(raw)
    assert sorted(zip(fb.item_id, fb.outcome, fb.variant, strict=True)) == [
        ("a", "clicked", "treatment"), ("b", "completed", "treatment")]
    summary = platform_events.feedback_summary(raw)
    assert summary["by_variant"] == {"treatment": {"served": 1, "clicked": 1, "completed": 1},
                                     "control": {"served": 1}}
    (course,) = platform_events.courses_from_interactions(rows)
    assert course.first_click.shape == (2, 3) and course.first_click[0, 1] == 3  # u1 first opened b on day 3
    with pytest.raises(Exception, match="not a learnloop event"):
        platform_events.interactions(["{not json"])


def test_an_event_delivered_twice_counts_once_in_training_data():
    """The relay publishes an event again when it stopped between the broker's ack and marking the row; later than
    JetStream's duplicate window (2 min) both copies stay in the stream, so an export holds them, and `--events`
    with `--platform` may read the same event twice. Each event id counts once: an open, a served list."""
    served = _event("recommendations.served", "u1", 10, experiment="recommender-v1", variant="treatment",
                    items=["a", "b"])
    opened = _event("content_view", "u1", 20, content_id="a")
    other = _event("content_view", "u2", 30, content_id="a")
    once = [served, opened, other]
    copy = served.model_copy(update={"timestamp": served.timestamp + timedelta(minutes=5)})  # same id, re-stamped
    twice = [e.model_dump_json() for e in [served, opened, opened, other]] + [copy.model_dump(mode="json"),
                                                                             other.model_dump(mode="json")]
    assert len(platform_events.interactions(twice)) == len(platform_events.interactions(once)) == 2
    columns = ["user_id", "item_id", "variant", "outcome", "served_event_id"]
    assert platform_events.feedback(twice)[columns].values.tolist() == [["u1", "a", "treatment", "clicked",
                                                                     str(served.event_id)]]
    summary = platform_events.feedback_summary(twice)
    assert summary == platform_events.feedback_summary(once)
    assert summary["by_variant"] == {"treatment": {"served": 1, "clicked": 1}} and summary["feedback_events"] == 1
    (course_twice,) = platform_events.courses_from_interactions(platform_events.interactions(twice))
    (course_once,) = platform_events.courses_from_interactions(platform_events.interactions(once))
    assert np.array_equal(course_twice.open_days_between(0, 10), course_once.open_days_between(0, 10))


def test_platform_items_have_the_same_kind_features_in_training_and_serving():
    from recommender._recommend import service

    def authored(event_type: str, item: str, kind: str, minutes: int) -> Event:
        return _event(event_type, "teacher", minutes).model_copy(update={"payload": {"content_id": item, "kind": kind}})

    events = [
        authored("content.created", "a", "document", 0),
        authored("content.created", "b", "text", 1),
        authored("content.updated", "b", "video", 2),  # the latest kind wins
        *(_event("content_view", user, 60 * 24 * day, content_id=item)
          for user, item, day in (("u1", "a", 0), ("u1", "b", 1), ("u2", "a", 1), ("u2", "c", 2), ("u1", "a", 3))),
    ]
    raw = [e.model_dump_json() for e in events]
    rows = platform_events.interactions(raw)
    kinds = platform_events.content_kinds(raw)
    assert kinds == {"a": "document", "b": "video"}
    (trained,) = platform_events.courses_from_interactions(rows, kinds)
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "kind": [kinds.get(i, "page") for i in "abc"]})
    served = service.course_entry(course_id="course-1", interactions=rows, items=items, day=4, cache=None).course
    columns = [rankers.FEATURES.index(name) for name in ("item_content_kind", "kind_affinity", "focus_gap_3d")]
    np.testing.assert_array_equal(rankers.features(trained, 4)[..., columns], rankers.features(served, 4)[..., columns])
    code = rankers.CONTENT_KIND_CODE
    assert rankers.features(trained, 4)[0, :, columns[0]].tolist() == [code["document"], code["video"], code["text"]]


def test_planned_weeks_reach_the_ranker_alike_in_training_and_serving():
    """The instructor's planned week (1 = the first) is the ranker's week_from (0 = the first) on both paths; the
    latest event wins and a null plan clears it; the popularity rule holds items planned for later weeks back."""
    from recommender._recommend import service

    def planned(event_type: str, item: str, week, minutes: int) -> Event:
        return _event(event_type, "teacher", minutes).model_copy(
            update={"payload": {"content_id": item, "kind": "text", "planned_week": week}})

    events = [
        _event("course.created", "teacher", -3 * 24 * 60),  # weeks count from the course's creation, 3 days earlier
        planned("content.created", "a", 1, 0),
        planned("content.created", "b", 3, 1),
        planned("content.created", "c", 2, 2),
        planned("content.updated", "c", None, 3),  # plan cleared
        planned("content.updated", "b", 4, 4),  # the latest plan wins
        *(_event("content_view", user, 60 * 24 * day, content_id=item)
          for user, item, day in (("u1", "a", 0), ("u1", "b", 1), ("u2", "a", 1), ("u2", "c", 2), ("u1", "a", 9))),
    ]
    raw = [e.model_dump_json() for e in events]
    weeks = api.content_weeks_from_events(raw)
    assert weeks == {"a": 0, "b": 3}
    (trained,) = platform_events.courses_from_interactions(platform_events.interactions(raw), None, weeks)
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "kind": "text", "week_from": [0, 3, None]})
    rows = platform_events.interactions(raw)
    assert rows.loc[(rows.user_id == "u1") & (rows.item_id == "b"), "day"].tolist() == [4]  # opened on day 1 + 3
    served = service.course_entry(course_id="course-1", interactions=rows, items=items, day=10, cache=None)
    gap = rankers.FEATURES.index("planned_week_gap")
    np.testing.assert_array_equal(rankers.features(trained, 10)[..., gap], rankers.features(served.course, 10)[..., gap])
    assert rankers.features(served.course, 10)[0, :, gap].tolist()[:2] == [-1.0, 2.0]  # day 10 is in week 1 (0-based)
    assert rankers.features(served.course, 10)[0, 2, gap] == rankers.MISSING  # no plan: unknown, not week 0
    assert served.planned_later.tolist() == [False, True, False]
    listed = service.recommend(user_id="newcomer", course_id="course-1", interactions=rows, items=items, day=10,
                               limit=3, variant=Variant.control, experiment="x", cache=None)
    assert [r.item_id for r in listed.items][-1] == "b"  # the most opened after "a", but planned for week 4

    class FavoursB:  # ordering only: a ranker that scores item b highest
        version = "test"

        def score(self, feats):
            return np.array([0.2, 0.9, 0.1])

    listed = service.recommend(user_id="u2", course_id="course-1", interactions=rows, items=items, day=10, limit=3,
                               variant=Variant.treatment, experiment="x", ranker=FavoursB(), cache=None)
    assert [r.item_id for r in listed.items] == ["b"] and listed.model_version == "test"  # u2 opened a and c
    rows_u2_early = rows[(rows.user_id != "u2") | (rows.day < 5)]  # u2 has opened only a (day 4): c is still open
    listed = service.recommend(user_id="u2", course_id="course-1", interactions=rows_u2_early, items=items, day=10,
                               limit=3, variant=Variant.treatment, experiment="x", ranker=FavoursB(), cache=None)
    assert [r.item_id for r in listed.items] == ["c", "b"]  # the plan outranks the ranker's preference for b


def test_training_counts_platform_days_from_the_course_start_as_serving_does():
    """The latest ``start`` in the course events wins (null: back to the creation); opens before the start count on
    day 0, as serving counts them; a start pandas cannot hold is ignored rather than failing the training run."""

    def course_event(kind: str, minutes: int, **payload) -> Event:
        return _event(kind, "teacher", minutes).model_copy(update={"payload": payload})

    day = 24 * 60
    opens = [_event("content_view", "u1", 2 * day, content_id="a"), _event("content_view", "u1", 8 * day,
                                                                          content_id="b")]
    start = (datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(days=5)).isoformat()
    moved = [course_event("course.created", 0, start=None), course_event("course.updated", 10, start=start)]
    assert platform_events.interactions([*moved, *opens])["day"].tolist() == [0, 3]
    cleared = [*moved, course_event("course.updated", 20, start=None)]
    assert platform_events.interactions([*cleared, *opens])["day"].tolist() == [2, 8]
    too_late = [course_event("course.created", 0, start="3000-01-01T00:00:00+00:00")]
    assert platform_events.interactions([*too_late, *opens])["day"].tolist() == [2, 8]


def test_opens_stamped_in_the_future_are_no_training_data():
    """The platform stored opens stamped 2300 before it refused them: training skips them (as serving does) instead
    of failing on a date pandas cannot hold."""
    opens = [_event("content_view", "u1", 0, content_id="a"), _event("content_view", "u1", 60, content_id="b")]
    future = [opens[0].model_copy(update={"timestamp": datetime(2300, 1, 1, tzinfo=UTC), "payload": {"content_id": "c"}}),
              opens[0].model_copy(update={"timestamp": datetime.now(UTC) + timedelta(days=30),
                                          "payload": {"content_id": "d"}})]
    served = _event("recommendations.served", "u1", -1, experiment="recommender-v1", variant="treatment",
                    items=["a", "c", "d"])
    rows = platform_events.interactions([*opens, *future])
    assert rows["item_id"].tolist() == ["a", "b"] and rows["day"].tolist() == [0, 0]
    assert platform_events.feedback([served, *opens, *future])["item_id"].tolist() == ["a"]
