"""Job logic without any store: threshold and cooldown, drivers in words from known feature values, the model's
direction deciding which driver comes first, and the suggested actions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines.interventions.api import (
    Decision,
    Driver,
    InterventionPolicy,
    cohort_reference,
    decide,
    explain_risk,
    suggest_actions,
)
from platform_api.data import AlertStatus, PriorAlert

NOW = datetime(2026, 11, 20, tzinfo=UTC)
POLICY = InterventionPolicy(threshold=0.7, cooldown_days=7, rearm_margin=0.1)


def prior(days_ago: float, risk: float) -> PriorAlert:
    return PriorAlert(alert_id=uuid.uuid4(), enrollment_id=uuid.uuid4(), risk_score=risk, status=AlertStatus.open,
                      created_at=NOW - timedelta(days=days_ago))


@pytest.mark.parametrize(("risk", "last", "expected"), [
    (0.69, None, Decision.below_threshold),
    (0.70, None, Decision.raise_alert),  # the threshold itself alerts
    (0.85, prior(2, 0.80), Decision.suppressed_by_cooldown),  # within the cooldown, rose by less than the margin
    (0.90, prior(2, 0.80), Decision.raise_alert),  # rose by exactly the margin: re-alert
    (0.75, prior(7, 0.90), Decision.raise_alert),  # the cooldown is over
    (0.75, prior(6.9, 0.90), Decision.suppressed_by_cooldown),
    (0.50, prior(1, 0.90), Decision.below_threshold),  # fell below: nothing, whatever happened before
])
def test_threshold_and_cooldown(risk, last, expected):
    assert decide(risk=risk, prior=last, now=NOW, policy=POLICY) is expected


def test_nan_risk_never_alerts():
    assert decide(risk=float("nan"), prior=None, now=NOW, policy=POLICY) is Decision.below_threshold


COLUMNS = ["days_since_last_activity", "active_days_28d", "n_due", "n_missed", "n_submitted", "n_late",
           "clicks_total_28d", "clicks_total_cum", "has_click_data", "score_mean", "n_failed_scores",
           "studied_credits", "num_of_prev_attempts", "prior_fail_or_withdrawn", "imd_decile"]
TYPICAL = dict(zip(COLUMNS, [1, 14, 3, 0, 3, 0, 100, 400, 1, 70, 0, 60, 0, 0, 5], strict=True))


def learner(**values) -> dict:
    return {**TYPICAL, **values}


def toy_model(frame: pd.DataFrame) -> np.ndarray:
    """Risk rises with missed work (strongly), inactivity and low clicks; deprivation also raises it."""
    logit = (-4 + 1.5 * frame["n_missed"] + 0.08 * frame["days_since_last_activity"]
             - 0.01 * frame["clicks_total_28d"] + 0.2 * (10 - frame["imd_decile"]))
    return 1 / (1 + np.exp(-logit.to_numpy(dtype=float)))


def test_drivers_in_words_from_known_values_ordered_by_the_models_direction():
    rows = pd.DataFrame([learner(n_missed=2, n_submitted=1, n_late=1, days_since_last_activity=12,
                                 clicks_total_28d=30, active_days_28d=3, imd_decile=1)])
    reference = pd.DataFrame([TYPICAL])
    (drivers,) = explain_risk(toy_model, rows, reference)
    assert [d.key for d in drivers] == ["missed_assessments", "inactivity", "low_clicks"]
    assert [d.text for d in drivers] == [
        "2 of 3 assessments missed; 1 assessment submitted late",
        "no activity in 12 days (course median 1)",
        "clicks in the last 28 days 70% below the course cohort (30 vs median 100)",
    ]
    assert drivers[0].contribution > drivers[1].contribution > drivers[2].contribution > 0
    # Deprivation moves this toy model's score, but background is never named as a reason.
    assert all("imd" not in d.key and "deprivation" not in d.text for d in drivers)


def test_a_typical_learner_has_no_drivers_and_small_effects_are_not_named():
    rows = pd.DataFrame([TYPICAL, learner(days_since_last_activity=1.1)])
    assert explain_risk(toy_model, rows, pd.DataFrame([TYPICAL, TYPICAL])) == [[], []]


def test_sentences_for_marks_history_and_missing_click_data():
    rows = pd.DataFrame([learner(score_mean=41, n_failed_scores=2, num_of_prev_attempts=1, prior_fail_or_withdrawn=2,
                                 has_click_data=0, clicks_total_28d=0)])

    def model(frame):  # marks and history matter; clicks would too, but there is no click data to talk about
        return 1 / (1 + np.exp(-(0.1 * (70 - frame["score_mean"]) + frame["num_of_prev_attempts"]
                                 - 0.02 * frame["clicks_total_28d"]).to_numpy(dtype=float)))

    (drivers,) = explain_risk(model, rows, pd.DataFrame([TYPICAL]), max_drivers=5)
    texts = {d.key: d.text for d in drivers}
    assert texts["marks"] == "average mark 41 (course median 70); 2 marked assessments failed"
    assert texts["history"] == "1 previous attempt at this module; did not pass 2 earlier presentations"
    assert "low_clicks" not in texts


def test_cohort_reference_uses_the_course_median_or_everyone_for_small_courses():
    frame = pd.DataFrame({"n_missed": [0, 1, 2, 3, 10, 20], "score_mean": [50, 60, 70, 80, 90, 95]})
    courses = ["A", "A", "A", "A", "B", "B"]
    reference = cohort_reference(frame, courses, min_cohort=3)
    assert reference.loc[0, "n_missed"] == 1.5 and reference.loc[0, "score_mean"] == 65  # A's own median
    assert reference.loc[4, "n_missed"] == 2.5 and reference.loc[5, "score_mean"] == 75  # B is small: everyone's
    only_b = cohort_reference(frame, courses, min_cohort=3, select=np.array([4]))
    assert list(only_b.index) == [4] and only_b.loc[4, "n_missed"] == 2.5


def test_suggested_actions_follow_the_drivers():
    due = {"assessment_id": str(uuid.uuid4()), "title": "TMA 2", "due_at": "2026-11-25T12:00:00+00:00"}
    missed = [Driver("missed_assessments", "2 of 3 assessments missed", 0.3)]
    actions = suggest_actions(drivers=missed, next_due=due, remedial=[{"item_id": "x", "title": "Week 3 recap"}])
    assert [a["kind"] for a in actions] == ["message_learner", "recommend_content", "extend_deadline"]
    assert actions[0]["label"] == "Message the learner: check in about 2 of 3 assessments missed"
    assert actions[1]["label"] == "Recommend remedial content: Week 3 recap"
    assert actions[2]["details"]["extended_due_at"].startswith("2026-12-02")
    # A workload-driven alert suggests no deadline extension; no content, no recommendation.
    workload = [Driver("workload", "studying 240 credits this term", 0.1)]
    assert [a["kind"] for a in suggest_actions(drivers=workload, next_due=due, remedial=None)] == ["message_learner"]


def test_click_sentences():
    from pipelines.interventions._drivers import clicks_text

    ref = {"clicks_total_28d": 56.0, "clicks_total_cum": 300.0}
    assert clicks_text({"has_click_data": 1, "clicks_total_28d": 0.0}, ref) == \
        "no clicks in the last 28 days (course median 56)"
    assert clicks_text({"has_click_data": 1, "clicks_total_28d": 14.0}, ref) == \
        "clicks in the last 28 days 75% below the course cohort (14 vs median 56)"
    assert clicks_text({"has_click_data": 0, "clicks_total_28d": 0.0}, ref) is None  # no click data at all
