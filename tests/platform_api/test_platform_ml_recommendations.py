"""GET /api/v1/users/{id}/recommendations: the recommender's list from platform activity, its A/B arm, fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from platform_fixtures import Platform, fresh_database_url, start_platform

from platform_api.data import MLBackends


@pytest.fixture(scope="module")
def rec_platform(tmp_path_factory) -> Iterator[Platform]:
    from functools import partial

    from learnloop.settings import Settings
    from recommender.api import recommend

    database = fresh_database_url("sqlite", tmp_path_factory.mktemp("db-recs"))
    data_dir = tmp_path_factory.mktemp("recs-data")
    # The recommender looks for its champion ranker in this test's own registry (none: marked popularity).
    bound = partial(recommend, settings=Settings(data_dir=data_dir, env="test"))
    yield from start_platform(next(database), data_dir, ml=MLBackends(recommend=bound))


@pytest.fixture(scope="module")
def course(rec_platform):
    """Six items; three classmates opened items 0 and 1 (item 0 most), one learner opened item 0 only."""
    p = rec_platform
    _, instructor = p.user("instructor")
    course_id = p.course(instructor)
    items = []
    for n in range(6):
        response = p.client.post("/api/v1/content", headers=instructor,
                                 json={"course_id": course_id, "title": f"Unit {n}", "body": f"unit {n}"})
        assert response.status_code == 201, response.text
        items.append(response.json()["id"])
    learners = {}
    for name in ("a", "b", "c", "active", "new"):
        learners[name] = p.user(name=name)
        p.enroll(course_id, learners[name][1])

    def open_item(who: str, item: int) -> None:
        response = p.client.post("/api/v1/events", headers=learners[who][1],
                                 json={"event_type": "content_view", "content_id": items[item]})
        assert response.status_code in (201, 202), response.text

    for who in ("a", "b", "c"):
        open_item(who, 0)
    for who in ("a", "b"):
        open_item(who, 1)
    open_item("active", 0)
    return {"id": course_id, "items": items, "learners": learners, "instructor": instructor}


def _recs(p: Platform, user_id: str, course_id: str, headers, **params):
    return p.client.get(f"/api/v1/users/{user_id}/recommendations", params={"course_id": course_id, **params},
                        headers=headers)


def test_cold_start_gets_course_popularity_with_its_arm(rec_platform, course):
    from recommender.api import assign_variant

    user_id, headers = course["learners"]["new"]
    response = _recs(rec_platform, user_id, course["id"], headers, limit=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cold_start"] is True and body["fallback"] is None
    assert "X-Learnloop-Fallback" not in response.headers
    assert [i["item_id"] for i in body["data"]][:2] == course["items"][:2]  # most opened first
    assert body["variant"] == assign_variant(user_id).value and body["experiment"] == "recommender-v1"
    again = _recs(rec_platform, user_id, course["id"], headers, limit=3).json()
    assert again["variant"] == body["variant"]  # deterministic by user hash


def test_a_learner_with_history_never_gets_what_they_opened(rec_platform, course):
    user_id, headers = course["learners"]["active"]
    body = _recs(rec_platform, user_id, course["id"], headers).json()
    assert body["cold_start"] is False and body["variant"] in ("control", "treatment")
    served = [i["item_id"] for i in body["data"]]
    assert course["items"][0] not in served and set(served) <= set(course["items"])


def test_both_arms_are_served_and_logged(rec_platform, course):
    from sqlalchemy import select

    from platform_api._models import OutboxEvent

    arms = {}
    for user_id, headers in course["learners"].values():
        arms[user_id] = _recs(rec_platform, user_id, course["id"], headers).json()["variant"]
    # Ids are random: add learners until both arms occur (a 50% share; all 16 in one arm has p = 2^-15).
    while len(set(arms.values())) < 2 and len(arms) < 16:
        user_id, headers = rec_platform.user()
        rec_platform.enroll(course["id"], headers)
        arms[user_id] = _recs(rec_platform, user_id, course["id"], headers).json()["variant"]
    assert set(arms.values()) == {"control", "treatment"}, arms
    with rec_platform.app.state.sessions() as session:
        logged = session.scalars(select(OutboxEvent.envelope).where(
            OutboxEvent.event_type == "recommendations.served")).all()
    latest = {e["user_id"]: e["payload"]["variant"] for e in logged}
    assert all(latest[user_id] == arm for user_id, arm in arms.items())


def test_only_the_learner_and_staff(rec_platform, course):
    user_id, _ = course["learners"]["new"]
    _, classmate = course["learners"]["a"]
    assert _recs(rec_platform, user_id, course["id"], classmate).status_code == 403
    assert _recs(rec_platform, user_id, course["id"], course["instructor"]).status_code == 200
    outsider_id, _ = rec_platform.user()
    response = _recs(rec_platform, outsider_id, course["id"], rec_platform.admin_headers)
    assert response.status_code == 409 and "not enrolled" in response.json()["error"]["message"]


def test_fallback_is_popularity_with_the_header(rec_platform, course):
    app = rec_platform.app
    wired = app.state.ml
    user_id, headers = course["learners"]["active"]
    try:
        app.state.ml = MLBackends()
        response = _recs(rec_platform, user_id, course["id"], headers)
        assert response.status_code == 200
        assert response.headers["X-Learnloop-Fallback"] == "recommendations-popularity"
        body = response.json()
        assert body["variant"] is None and body["fallback"] == "no recommender in this API process"
        assert [i["item_id"] for i in body["data"]] == course["items"][1:]  # item 0 already opened

        def broken(**_):
            raise RuntimeError("the ranker crashed")

        app.state.ml = MLBackends(recommend=broken)
        response = _recs(rec_platform, user_id, course["id"], headers)
        assert response.status_code == 200 and response.json()["fallback"] == "recommender failed: RuntimeError"
    finally:
        app.state.ml = wired


def test_a_model_service_that_is_down_is_the_fallback_with_its_reason_and_no_traceback(rec_platform, course):
    """The served platform's backend is the model service's client: while it is down every request gets the
    popularity list saying why, and the log gets one line per request, not a traceback (it got both a traceback and
    "recommender failed: Unavailable")."""
    import logging

    from down_services import closed_port

    from serving.api import RecommendClient

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    app, wired = rec_platform.app, rec_platform.app.state.ml
    user_id, headers = course["learners"]["active"]
    client = RecommendClient(base_url=f"http://127.0.0.1:{closed_port()}", timeout_s=1.0)
    handler = Collect()
    logging.getLogger("platform_api.recommendations").addHandler(handler)
    try:
        app.state.ml = MLBackends(recommend=client)
        for _ in range(7):  # past the breaker's threshold (5): "circuit open" is the reason after that
            response = _recs(rec_platform, user_id, course["id"], headers)
            assert response.status_code == 200
            assert response.headers["X-Learnloop-Fallback"] == "recommendations-popularity"
            assert response.json()["fallback"].startswith("recommender unavailable: ")
            assert [i["item_id"] for i in response.json()["data"]] == course["items"][1:]
        assert "circuit open" in response.json()["fallback"]
    finally:
        logging.getLogger("platform_api.recommendations").removeHandler(handler)
        app.state.ml = wired
        client.close()
    assert len(records) == 7 and not any(r.exc_info for r in records)


def test_opens_of_served_items_become_feedback_for_the_next_training_run(rec_platform, course):
    """What the platform emits (served lists + activity) is what `learnloop train recommender --events` reads."""
    from sqlalchemy import select

    from platform_api._models import OutboxEvent
    from recommender.api import feedback_from_events, interactions_from_events

    user_id, headers = course["learners"]["b"]
    body = _recs(rec_platform, user_id, course["id"], headers).json()
    first = body["data"][0]["item_id"]
    for event_type in ("content_view", "video_complete"):
        response = rec_platform.client.post("/api/v1/events", headers=headers,
                                            json={"event_type": event_type, "content_id": first})
        assert response.status_code in (201, 202), response.text
    with rec_platform.app.state.sessions() as session:
        envelopes = session.scalars(select(OutboxEvent.envelope).where(
            OutboxEvent.course_id == course["id"]).order_by(OutboxEvent.id)).all()
    served = [e for e in envelopes if e["event_type"] == "recommendations.served" and e["user_id"] == user_id]
    assert served[-1]["payload"]["variant"] == body["variant"]
    if body["variant"] == "treatment":  # no ranker registered in this test's registry: marked as such
        assert served[-1]["payload"]["model_version"] is None and served[-1]["payload"]["ranker_fallback"]
    feedback = feedback_from_events(envelopes)
    mine = feedback[feedback.user_id == user_id]
    assert sorted(zip(mine.item_id, mine.outcome, mine.variant, strict=True)) == [
        (first, "clicked", body["variant"]), (first, "completed", body["variant"])]
    opens = interactions_from_events(envelopes)
    assert {(user_id, first)} <= set(zip(opens.user_id, opens.item_id, strict=True))
    assert len(opens) >= 8  # the fixture's six opens + these two


def test_the_course_plan_holds_later_weeks_back(rec_platform):
    """Content carries the instructor's planned week: validated against the course, editable, clearable, sent to
    the recommender, and in week 1 an item planned for week 3 comes after the unplanned and week-1 items (in the
    recommender's popularity rule and in the platform's own fallback)."""
    from sqlalchemy import select

    from platform_api._models import OutboxEvent
    from recommender.api import content_weeks_from_events

    p = rec_platform
    _, instructor = p.user("instructor")
    course_id = p.course(instructor, duration_weeks=4)

    def create(title: str, **fields):
        return p.client.post("/api/v1/content", headers=instructor,
                             json={"course_id": course_id, "title": title, **fields})

    for bad, reason in ((5, "after the course's last week (4)"), (0, "greater than or equal to 1")):
        response = create("misplanned", planned_week=bad)
        assert response.status_code == 422 and reason in response.text, response.text
    created = [create("week 3 reading", planned_week=3), create("overview"), create("week 1 quiz", planned_week=1)]
    assert [r.status_code for r in created] == [201] * 3
    later, overview, first = (r.json()["id"] for r in created)
    assert [r.json()["planned_week"] for r in created] == [3, None, 1]

    user_id, learner = p.user()
    p.enroll(course_id, learner)
    body = _recs(p, user_id, course_id, learner).json()
    assert body["cold_start"] is True and [i["item_id"] for i in body["data"]] == [overview, first, later]
    assert [i["planned_week"] for i in body["data"]] == [None, 1, 3]  # shown with each recommended item
    app, wired = p.app, p.app.state.ml
    try:
        app.state.ml = MLBackends()
        assert [i["item_id"] for i in _recs(p, user_id, course_id, learner).json()["data"]] == [overview, first, later]
    finally:
        app.state.ml = wired

    response = p.client.put(f"/api/v1/content/{later}", headers=instructor, json={"planned_week": 9})
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "planned_week"
    response = p.client.put(f"/api/v1/content/{later}", headers=instructor, json={"planned_week": None})
    assert response.status_code == 200 and response.json()["planned_week"] is None  # an explicit null clears
    assert [i["item_id"] for i in _recs(p, user_id, course_id, learner).json()["data"]] == [later, overview, first]
    response = p.client.put(f"/api/v1/content/{overview}", headers=instructor, json={"planned_week": 2})
    assert response.status_code == 200 and response.json()["planned_week"] == 2

    with p.app.state.sessions() as session:
        envelopes = session.scalars(select(OutboxEvent.envelope).where(
            OutboxEvent.course_id == course_id).order_by(OutboxEvent.id)).all()
    # what `learnloop train recommender --events` reads: the latest plan per item, 0 = the first week
    assert content_weeks_from_events(envelopes) == {first: 0, overview: 1}


def test_learners_behind_the_plan_catch_up_before_the_next_assessment(rec_platform):
    """The assessment due next turns the top of the list to what the plan puts before it (up to this week) that the
    learner has not opened: one slot in every learner's list (an open at-risk alert changes nothing a learner can
    see), three in the remedial content the interventions job suggests to staff for a flagged learner."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from platform_api.api import record_alerts, remedial_content
    from platform_api.data import NewAlert

    p = rec_platform
    _, instructor = p.user("instructor")
    course_id = p.course(instructor, duration_weeks=6)
    ids = {}
    for title, week in (("intro", 1), ("reading", 1), ("week 2 notes", 2), ("glossary", None)):
        response = p.client.post("/api/v1/content", headers=instructor,
                                 json={"course_id": course_id, "title": title, "planned_week": week})
        assert response.status_code == 201, response.text
        ids[title] = response.json()["id"]
    calm_id, calm = p.user()
    p.enroll(course_id, calm)
    body = _recs(p, calm_id, course_id, calm).json()
    assert body["catch_up"] is None  # no assessment due: nothing to prepare for

    # due in week 2, given in another time zone (stored in UTC: the same instant)
    due = (datetime.now(UTC) + timedelta(days=10)).astimezone(timezone_plus_5())
    response = p.client.post("/api/v1/assessments", headers=instructor,
                             json={"course_id": course_id, "title": "TMA 1", "kind": "assignment",
                                   "due_at": due.isoformat()})
    assert response.status_code == 201, response.text
    body = _recs(p, calm_id, course_id, calm).json()
    assert body["catch_up"]["title"] == "TMA 1" and body["catch_up"]["due_week"] == 2
    assert abs(datetime.fromisoformat(body["catch_up"]["due_at"]) - due) < timedelta(seconds=1)
    assert body["catch_up"]["items"] == [ids["intro"]]  # one slot; week 2 notes are not behind yet
    assert body["data"][0]["item_id"] == ids["intro"] and "prepares for TMA 1" in body["data"][0]["reason"]
    assert len(body["data"]) == 4 and len({i["item_id"] for i in body["data"]}) == 4  # no duplicates
    p.client.post("/api/v1/events", headers=calm, json={"event_type": "content_view", "content_id": ids["intro"]})
    body = _recs(p, calm_id, course_id, calm).json()
    assert body["catch_up"]["items"] == [ids["reading"]] and ids["intro"] not in {i["item_id"] for i in body["data"]}

    flagged_id, flagged = p.user()
    enrollment_id = p.enroll(course_id, flagged)
    with p.app.state.sessions() as session:
        record_alerts(session=session, alerts=[NewAlert(enrollment_id=uuid.UUID(enrollment_id), risk_score=0.9,
                                                        threshold=0.7, model_name="risk", model_version="1")])
    own = _recs(p, flagged_id, course_id, flagged).json()
    assert own["catch_up"]["items"] == [ids["intro"]]  # the same list as anyone's: the alert stays hidden
    with p.app.state.sessions() as session:
        remedial = remedial_content(session=session, user_id=uuid.UUID(flagged_id), course_id=uuid.UUID(course_id),
                                    backend=None, limit=3)
    assert [r["item_id"] for r in remedial][:2] == [ids["intro"], ids["reading"]]  # up to three catch-up slots
    assert [r["item_id"] for r in _recs(p, flagged_id, course_id, flagged, limit=1).json()["data"]] == [ids["intro"]]


def timezone_plus_5():
    from datetime import timedelta, timezone

    return timezone(timedelta(hours=5))


def test_weeks_count_from_the_course_start_in_serving_and_in_training(rec_platform):
    """A course created before it starts: week 1 begins at ``starts_at``, for the plan's hold-back, the catch-up and
    the recommender's training (which reads the start from the course events, latest first)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from platform_api._models import OutboxEvent
    from recommender.api import interactions_from_events

    p = rec_platform
    _, instructor = p.user("instructor")
    starts = datetime.now(UTC) + timedelta(days=30)
    course_id = p.course(instructor, duration_weeks=8, starts_at=starts.isoformat())
    assert datetime.fromisoformat(p.client.get(f"/api/v1/courses/{course_id}", headers=instructor)
                                  .json()["starts_at"]) == starts
    ids = {}
    for week in (1, 2, 3, 4):
        response = p.client.post("/api/v1/content", headers=instructor,
                                 json={"course_id": course_id, "title": f"week {week}", "planned_week": week})
        ids[week] = response.json()["id"]
    user_id, learner = p.user()
    p.enroll(course_id, learner)
    # Before the start it is week 1: only week 1's item is not held back.
    assert [i["item_id"] for i in _recs(p, user_id, course_id, learner).json()["data"]][0] == ids[1]

    # The instructor moves the start 16 days into the past: it is week 3 now.
    response = p.client.put(f"/api/v1/courses/{course_id}", headers=instructor,
                            json={"starts_at": (datetime.now(UTC) - timedelta(days=16)).isoformat()})
    assert response.status_code == 200, response.text
    response = p.client.post("/api/v1/assessments", headers=instructor, json={
        "course_id": course_id, "title": "TMA 1", "kind": "assignment",
        "due_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()})
    assert response.status_code == 201, response.text
    body = _recs(p, user_id, course_id, learner).json()
    assert body["catch_up"]["due_week"] == 3 and body["catch_up"]["items"] == [ids[1]]
    assert [i["item_id"] for i in body["data"]] == [ids[1], ids[2], ids[3], ids[4]]  # week 4 last: still ahead
    p.client.post("/api/v1/events", headers=learner, json={"event_type": "content_view", "content_id": ids[2]})

    with p.app.state.sessions() as session:
        envelopes = session.scalars(select(OutboxEvent.envelope).where(
            OutboxEvent.course_id == course_id).order_by(OutboxEvent.id)).all()
    opens = interactions_from_events(envelopes)
    assert opens.loc[opens.item_id == ids[2], "day"].tolist() == [16]  # counted from the moved start, as served


def test_a_course_start_is_plausible_and_can_be_cleared(rec_platform):
    p = rec_platform
    _, instructor = p.user("instructor")
    response = p.client.post("/api/v1/courses", headers=instructor,
                             json={"title": "Far future", "starts_at": "3000-01-01T00:00:00Z"})
    assert response.status_code == 422 and "before the year 2200" in response.text
    course_id = p.course(instructor, starts_at="2030-01-01T00:00:00+01:00")
    course = p.client.get(f"/api/v1/courses/{course_id}", headers=instructor).json()
    assert course["starts_at"].startswith("2029-12-31T23:00:00")  # stored and returned in UTC
    response = p.client.put(f"/api/v1/courses/{course_id}", headers=instructor, json={"starts_at": None})
    assert response.status_code == 200 and response.json()["starts_at"] is None


def test_training_reads_the_platform_events_without_imported_history(rec_platform, course):
    """`learnloop train recommender --platform`: the platform database's own opens, plans and served lists, without
    imported OULAD rows (training reads those from the data set itself)."""
    from platform_api._outbox import emit
    from recommender._recommend.platform_events import from_platform
    from recommender.api import interactions_from_events

    p = rec_platform
    imported_user = "00000000-0000-0000-0000-00000000beef"
    with p.app.state.sessions() as session:
        emit(session, event_type="resource_click", user_id=imported_user, course_id=course["id"],
             payload={"content_id": course["items"][5], "import": True})
        session.commit()
    with p.app.state.sessions() as session:  # an imported course's content stays (its kind and plan count)
        emit(session, event_type="content.updated", course_id=course["id"],
             payload={"content_id": course["items"][4], "kind": "video", "planned_week": 2, "import": True})
        session.commit()
    events = from_platform(p.settings)
    assert {e.topic.value for e in events} >= {"lms.content.events", "lms.analytics.events", "lms.courses.events"}
    assert not any((e.payload or {}).get("import") for e in events if e.topic.value == "lms.analytics.events")
    assert any((e.payload or {}).get("import") and e.event_type == "content.updated" for e in events)
    opens = interactions_from_events(events)
    learners = {course["learners"][name][0] for name in ("a", "b", "c", "active")}
    assert learners <= set(opens.user_id) and imported_user not in set(opens.user_id)
    assert any(e.event_type == "recommendations.served" for e in events)
