"""``_activity.content_opens``, the opens that recommendations and the course plan count: read from the outbox once
per course and then incrementally, without missing a late commit or keeping an erased learner's id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from platform_fixtures import outbox_hole

from platform_api import _activity


@pytest.fixture
def opened(platform):
    p = platform
    _, instructor = p.user("instructor")
    course_id = p.course(instructor, starts_at=(datetime.now(UTC) - timedelta(days=10)).isoformat())
    items = [p.client.post("/api/v1/content", headers=instructor,
                           json={"course_id": course_id, "title": f"item {n}"}).json()["id"] for n in range(3)]
    learners = [p.user() for _ in range(2)]
    for _, headers in learners:
        p.enroll(course_id, headers)
    return {"course": uuid.UUID(course_id), "items": items, "learners": learners}


def _open(p, headers, item, when=None):
    body = {"event_type": "content_view", "content_id": item}
    if when is not None:
        body["timestamp"] = when.isoformat()
    assert p.client.post("/api/v1/events", headers=headers, json=body).status_code in (201, 202)


def _opens(p, course, items, start):
    with p.app.state.sessions() as session:
        return _activity.content_opens(session, course, set(items), start)


def test_new_opens_are_seen_after_the_first_read(platform, opened, monkeypatch):
    monkeypatch.setattr(_activity._CourseOpens, "SETTLE", timedelta(0))  # every row settles at once
    p, items, (first, second) = platform, opened["items"], opened["learners"]
    start = datetime.now(UTC) - timedelta(days=10)
    _open(p, first[1], items[0], when=start + timedelta(days=3, hours=1))
    _open(p, first[1], items[1], when=start - timedelta(days=2))  # before the start: day 0
    frame = _opens(p, opened["course"], items, start)
    assert sorted(zip(frame["item_id"], frame["day"], strict=True)) == sorted([(items[0], 3), (items[1], 0)])

    _open(p, second[1], items[2])
    frame = _opens(p, opened["course"], items, start)
    assert (second[0], items[2]) in set(zip(frame["user_id"], frame["item_id"], strict=True)) and len(frame) == 3
    assert len(_opens(p, opened["course"], items[:1], start)) == 1  # only the items asked for
    # a later start moves the days (computed per call, not cached)
    later = _opens(p, opened["course"], items, start + timedelta(days=2))
    assert dict(zip(later["item_id"], later["day"], strict=True))[items[0]] == 1


def test_an_erasure_rebuilds_the_cache(platform, opened, monkeypatch):
    monkeypatch.setattr(_activity._CourseOpens, "SETTLE", timedelta(0))
    p, items, (first, _) = platform, opened["items"], opened["learners"]
    start = datetime.now(UTC) - timedelta(days=10)
    _open(p, first[1], items[0])
    assert first[0] in set(_opens(p, opened["course"], items, start)["user_id"])
    assert p.client.delete(f"/api/v1/users/{first[0]}", headers=p.admin_headers).status_code == 204
    frame = _opens(p, opened["course"], items, start)
    assert first[0] not in set(frame["user_id"]) and len(frame) == 1  # the open stays, under the pseudonym


def test_a_row_committed_late_with_an_earlier_id_is_not_missed(platform, opened):
    """Rows written in the last minute are read again on every call: on PostgreSQL a transaction may commit an id
    lower than one already read."""
    from sqlalchemy import delete, select

    from learnloop.events import Topic
    from platform_api._models import OutboxEvent

    p, items, (first, second) = platform, opened["items"], opened["learners"]
    start = datetime.now(UTC) - timedelta(days=10)
    _open(p, first[1], items[0])
    _open(p, first[1], items[1])  # ids: open, open, ...
    with p.app.state.sessions() as session:
        ids = session.scalars(select(OutboxEvent.id).where(OutboxEvent.course_id == str(opened["course"]))
                              .order_by(OutboxEvent.id.desc()).limit(2)).all()
        envelope = session.get(OutboxEvent, ids[0]).envelope
        # the earlier of the two becomes a hole: its id is taken by a row that commits only after the read
        session.execute(delete(OutboxEvent).where(OutboxEvent.id == ids[1]))
        session.commit()
    assert len(_opens(p, opened["course"], items, start)) == 1
    with p.app.state.sessions() as session:
        session.add(OutboxEvent(id=ids[1], event_id=uuid.uuid4(), topic=str(Topic.analytics),
                                event_type="content_view", user_id=second[0], course_id=str(opened["course"]),
                                envelope={**envelope, "user_id": second[0], "payload": {"content_id": items[2]}}))
        session.commit()
    frame = _opens(p, opened["course"], items, start)
    assert (second[0], items[2]) in set(zip(frame["user_id"], frame["item_id"], strict=True)) and len(frame) == 2


def _insert(p, row_id: int, *, event_type: str, user_id: str, course_id: str | None, envelope: dict,
            created_at: datetime) -> None:
    from learnloop.events import topic_for
    from platform_api._models import OutboxEvent

    with p.app.state.sessions() as session:
        session.add(OutboxEvent(id=row_id, event_id=uuid.uuid4(), topic=str(topic_for(event_type)),
                                event_type=event_type, user_id=user_id, course_id=course_id, envelope=envelope,
                                created_at=created_at))
        session.commit()


def test_a_row_committed_long_after_its_id_is_found_by_the_recount(platform, opened, monkeypatch):
    """An import's rows carry the time its transaction began: on PostgreSQL they may commit minutes after later ids
    settled. The kept range is counted again (here on every call) and a different count rebuilds the cache."""
    monkeypatch.setattr(_activity._CourseOpens, "SETTLE", timedelta(0))
    monkeypatch.setattr(_activity._CourseOpens, "VERIFY_EVERY", timedelta(0))
    p, items, (first, second) = platform, opened["items"], opened["learners"]
    start = datetime.now(UTC) - timedelta(days=10)
    hole = outbox_hole(p)
    _open(p, first[1], items[0])
    assert len(_opens(p, opened["course"], items, start)) == 1
    _insert(p, hole, event_type="resource_click", user_id=second[0], course_id=str(opened["course"]),
            envelope={"event_type": "resource_click", "user_id": second[0], "course_id": str(opened["course"]),
                      "timestamp": "2020-01-01T12:00:00Z", "payload": {"content_id": items[1]}},
            created_at=datetime.now(UTC) - timedelta(minutes=5))
    frame = _opens(p, opened["course"], items, start)
    assert (second[0], items[1]) in set(zip(frame["user_id"], frame["item_id"], strict=True)) and len(frame) == 2


def test_an_erasure_committed_out_of_order_still_rebuilds(platform, opened, monkeypatch):
    """The erasure mark is (count, newest id) of the user.erased events: an erasure whose id is below the newest
    one (committed later) changes the count."""
    from sqlalchemy import update

    from platform_api._models import OutboxEvent

    monkeypatch.setattr(_activity._CourseOpens, "SETTLE", timedelta(0))
    p, items, (first, second) = platform, opened["items"], opened["learners"]
    start = datetime.now(UTC) - timedelta(days=10)
    _open(p, first[1], items[0])
    hole = outbox_hole(p)
    assert p.client.delete(f"/api/v1/users/{second[0]}", headers=p.admin_headers).status_code == 204
    assert first[0] in set(_opens(p, opened["course"], items, start)["user_id"])
    # the first learner's erasure took the earlier id and commits now: their opens move to a pseudonym
    with p.app.state.sessions() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.user_id == first[0]).values(user_id="erased-alias"))
        session.commit()
    _insert(p, hole, event_type="user.erased", user_id="erased-alias", course_id=None,
            envelope={"event_type": "user.erased", "user_id": "erased-alias", "payload": {}},
            created_at=datetime.now(UTC))
    assert first[0] not in set(_opens(p, opened["course"], items, start)["user_id"])


def test_an_event_from_the_future_is_refused_and_one_already_stored_breaks_nothing(platform, opened, monkeypatch):
    """pandas holds dates only up to 2262: one learner's open stamped 2300 made every recommendation and the plan of
    the course a 500. The API refuses times ahead of its clock; opens stored before that are skipped."""
    from platform_api._outbox import emit

    monkeypatch.setattr(_activity._CourseOpens, "SETTLE", timedelta(0))
    p, items, (first, second) = platform, opened["items"], opened["learners"]
    course = str(opened["course"])
    for when in ("2300-01-01T00:00:00Z", (datetime.now(UTC) + timedelta(hours=1)).isoformat()):
        refused = p.client.post("/api/v1/events", headers=first[1],
                                json={"event_type": "page_view", "course_id": course, "timestamp": when})
        assert refused.status_code == 422, refused.text
        assert "ahead of the server clock" in refused.json()["error"]["message"]
    _open(p, first[1], items[0], when=datetime.now(UTC) + timedelta(minutes=1))  # a client clock a little fast
    old = p.client.post("/api/v1/events", headers=first[1],
                        json={"event_type": "page_view", "course_id": course, "timestamp": "1969-12-31T23:59:59Z"})
    assert old.status_code == 422 and "1970" in old.json()["error"]["message"]

    with p.app.state.sessions() as session:  # what the API accepted before it refused them
        for year in (2300, 2200):
            emit(session, event_type="content_view", user_id=second[0], course_id=course,
                 timestamp=datetime(year, 1, 1, tzinfo=UTC), payload={"content_id": items[1]})
        session.commit()
    start = datetime.now(UTC) - timedelta(days=10)
    frame = _opens(p, opened["course"], items, start)
    assert list(frame["item_id"]) == [items[0]]
    plan = p.client.get(f"/api/v1/courses/{course}/plan", headers=p.admin_headers)
    assert plan.status_code == 200, plan.text
    listed = p.client.get(f"/api/v1/users/{second[0]}/recommendations", params={"course_id": course},
                          headers=second[1])
    assert listed.status_code == 200, listed.text
