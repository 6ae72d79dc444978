"""The job end to end on the test world: who gets an alert, why, what is suggested, and the cooldown."""

from __future__ import annotations

from interventions_fixtures import NOW

from pipelines.interventions.api import InterventionPolicy, run_interventions


def _alerts(world, course_id):
    from sqlalchemy import select

    from platform_api._models import Alert
    from platform_api.api import open_session

    with open_session(world.settings, migrate_first=False) as session:
        return list(session.scalars(select(Alert).where(Alert.course_id == course_id)
                                    .order_by(Alert.risk_score.desc())))


def test_first_run_scores_linked_enrollments_and_alerts_the_learners_at_risk(interventions_world):
    world = interventions_world
    summary = world.first_run
    # 12 + 4 learners with features; one linked learner without features; one enrollment without model ids.
    assert summary["active_enrollments"] == 18
    assert summary["scored"] == 16 and summary["no_features"] == 1 and summary["not_linked"] == 1
    assert summary["alerts_raised"] == 3 and summary["suppressed_by_cooldown"] == 0
    assert summary["below_threshold"] == 13
    assert summary["model_version"] == "1" and summary["threshold"] == 0.5
    alerted = {a.user_id for a in _alerts(world, world.course_a)}
    assert alerted == {world.user_ids[2001], world.user_ids[2002]}
    assert {a.user_id for a in _alerts(world, world.course_b)} == {world.user_ids[3001]}


def test_alerts_carry_drivers_in_words_and_suggested_actions(interventions_world):
    world = interventions_world
    top = _alerts(world, world.course_a)[0]
    assert top.user_id == world.user_ids[2001] and top.risk_score > 0.5
    texts = [d["text"] for d in top.drivers]
    keys = [d["key"] for d in top.drivers]
    assert "missed_assessments" in keys and "3 of 3 assessments missed" in texts
    assert any(t.startswith("no activity in 20 days") for t in texts)
    contributions = [d["contribution"] for d in top.drivers]
    assert contributions == sorted(contributions, reverse=True) and contributions[-1] >= 0.01
    kinds = [a["kind"] for a in top.actions]
    assert kinds[0] == "message_learner" and "extend_deadline" in kinds  # TMA 2 is due in 5 days
    extend = next(a for a in top.actions if a["kind"] == "extend_deadline")
    assert extend["details"]["title"] == "TMA 2" and extend["details"]["extension_days"] == 7
    # Course B has no assessment with a due date and no content: only the message.
    (b_alert,) = _alerts(world, world.course_b)
    assert [a["kind"] for a in b_alert.actions] == ["message_learner"]


def test_second_run_within_cooldown_raises_nothing_new(interventions_world):
    world = interventions_world
    again = run_interventions(settings=world.settings, policy=InterventionPolicy(threshold=0.5), now=NOW,
                              recommend=None).to_dict()
    assert again["scored"] == 16 and again["alerts_raised"] == 0 and again["suppressed_by_cooldown"] == 3
    assert len(_alerts(world, world.course_a)) == 2


def test_alert_events_are_emitted(interventions_world):
    from learnloop.events import Topic
    from platform_api.api import open_session, read_events

    with open_session(interventions_world.settings, migrate_first=False) as session:
        events = [e for _, e in read_events(session=session, topic=Topic.enrollments, limit=10_000)
                  if e.event_type == "enrollment.alert_raised"]
    assert len(events) == 3
    assert {e.payload["model_version"] for e in events} == {"1"}
    assert all(e.payload["risk_score"] >= 0.5 and e.payload["drivers"] for e in events)
