"""The course plan (GET/PUT /api/v1/courses/{id}/plan and the staff page /staff/courses/{id}/plan): content and
assessments by week, how many active learners opened each item, and changing several items' weeks at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from platform_fixtures import PASSWORD, Platform


@pytest.fixture
def planned(platform: Platform):
    """A six-week course that began 15 days ago (week 3 now): four items, an assessment due in week 4, one without a
    due date; three active learners and one who dropped out; item "week 1 reading" opened by two active learners,
    the dropped one and the instructor."""
    p = platform
    instructor_id, instructor = p.user("instructor")
    course_id = p.course(instructor, duration_weeks=6,
                         starts_at=(datetime.now(UTC) - timedelta(days=15)).isoformat())
    ids = {}
    for title, week in (("week 1 reading", 1), ("week 2 video", 2), ("week 5 notes", 5), ("glossary", None)):
        response = p.client.post("/api/v1/content", headers=instructor,
                                 json={"course_id": course_id, "title": title, "planned_week": week,
                                       "position": len(ids)})
        assert response.status_code == 201, response.text
        ids[title] = response.json()["id"]
    for title, due in (("TMA 1", datetime.now(UTC) + timedelta(days=8)), ("Reflection", None)):
        response = p.client.post("/api/v1/assessments", headers=instructor, json={
            "course_id": course_id, "title": title, "kind": "assignment",
            "due_at": due.isoformat() if due else None})
        assert response.status_code == 201, response.text
    learners = [p.user(name=f"learner {n}") for n in range(4)]
    enrollments = [p.enroll(course_id, headers) for _, headers in learners]
    for _, headers in (*learners[:2], learners[3], (None, instructor)):
        response = p.client.post("/api/v1/events", headers=headers,
                                 json={"event_type": "content_view", "content_id": ids["week 1 reading"]})
        assert response.status_code in (201, 202), response.text
    dropped = p.client.put(f"/api/v1/enrollments/{enrollments[3]}/progress", headers=learners[3][1],
                           json={"progress": 10, "status": "dropped"})
    assert dropped.status_code == 200, dropped.text
    emails = {who: p.client.get(f"/api/v1/users/{user_id}", headers=p.admin_headers).json()["email"]
              for who, user_id in (("instructor", instructor_id), ("learner", learners[0][0]))}
    return {"id": course_id, "items": ids, "instructor": instructor, "learner": learners[0][1], "emails": emails}


def _by_title(plan: dict) -> dict[str, dict]:
    entries = [item for week in plan["weeks"] for item in week["items"]] + plan["unplanned"]
    return {item["title"]: item for item in entries}


def test_staff_see_the_weeks_what_is_due_and_who_opened_what(platform, planned):
    response = platform.client.get(f"/api/v1/courses/{planned['id']}/plan", headers=planned["instructor"])
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["current_week"] == 3 and plan["learners"] == 3 and plan["can_edit"] is True
    assert [w["week"] for w in plan["weeks"]] == [1, 2, 3, 4, 5, 6]
    assert [[i["title"] for i in w["items"]] for w in plan["weeks"]] == [
        ["week 1 reading"], ["week 2 video"], [], [], ["week 5 notes"], []]
    assert [[a["title"] for a in w["assessments"]] for w in plan["weeks"]][3] == ["TMA 1"]
    assert [a["title"] for a in plan["unscheduled_assessments"]] == ["Reflection"]
    assert [i["title"] for i in plan["unplanned"]] == ["glossary"]
    starts = datetime.fromisoformat(plan["starts_at"])
    assert datetime.fromisoformat(plan["weeks"][2]["starts_at"]) - starts == timedelta(weeks=2)

    items = _by_title(plan)
    # two of the three active learners; the dropped learner's and the instructor's opens do not count
    assert items["week 1 reading"]["opened_by"] == 2 and not items["week 1 reading"]["behind"]
    assert items["week 2 video"]["opened_by"] == 0 and items["week 2 video"]["behind"]  # due by now, nobody
    assert not items["week 5 notes"]["behind"] and not items["glossary"]["behind"]  # not due / not planned


def test_learners_may_not_see_the_plan_and_assistants_may_not_change_it(platform, planned):
    p = platform
    response = p.client.get(f"/api/v1/courses/{planned['id']}/plan", headers=planned["learner"])
    assert response.status_code == 403 and "recommendations" in response.json()["error"]["message"]

    ta_id, ta = p.user()
    granted = p.client.post(f"/api/v1/users/{ta_id}/roles", headers=planned["instructor"], json={
        "role_name": "teaching_assistant", "scope_type": "course", "scope_id": planned["id"]})
    assert granted.status_code == 201, granted.text
    plan = p.client.get(f"/api/v1/courses/{planned['id']}/plan", headers=ta).json()
    assert plan["can_edit"] is False and plan["learners"] == 3
    change = {"items": [{"content_id": planned["items"]["glossary"], "planned_week": 1}]}
    assert p.client.put(f"/api/v1/courses/{planned['id']}/plan", headers=ta, json=change).status_code == 403

    # a content editor (the creator role) plans the course without seeing learners' activity
    creator_id, creator = p.user()
    granted = p.client.post(f"/api/v1/users/{creator_id}/roles", headers=planned["instructor"], json={
        "role_name": "creator", "scope_type": "course", "scope_id": planned["id"]})
    assert granted.status_code == 201, granted.text
    plan = p.client.get(f"/api/v1/courses/{planned['id']}/plan", headers=creator).json()
    assert plan["can_edit"] is True and plan["learners"] is None
    assert {i["opened_by"] for i in _by_title(plan).values()} == {None}
    response = p.client.put(f"/api/v1/courses/{planned['id']}/plan", headers=creator, json=change)
    assert response.status_code == 200 and response.json()["changed"] == 1


def test_several_items_move_at_once_each_as_a_new_version(platform, planned):
    p, items = platform, planned["items"]
    url = f"/api/v1/courses/{planned['id']}/plan"
    response = p.client.put(url, headers=planned["instructor"], json={"items": [
        {"content_id": items["glossary"], "planned_week": 1},
        {"content_id": items["week 5 notes"], "planned_week": None},  # null takes it out of the plan
        {"content_id": items["week 1 reading"], "planned_week": 1}]})  # already there: left alone
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] == 2
    moved = _by_title(body["plan"])
    assert moved["glossary"]["planned_week"] == 1 and moved["week 5 notes"]["planned_week"] is None
    glossary = p.client.get(f"/api/v1/content/{items['glossary']}", headers=planned["instructor"]).json()
    reading = p.client.get(f"/api/v1/content/{items['week 1 reading']}", headers=planned["instructor"]).json()
    assert glossary["version"] == 2 and reading["version"] == 1

    with p.app.state.sessions() as session:
        from sqlalchemy import select

        from platform_api._models import OutboxEvent

        updates = [e["payload"] for e in session.scalars(select(OutboxEvent.envelope).where(
            OutboxEvent.event_type == "content.updated", OutboxEvent.course_id == planned["id"]))]
    # the recommender's training reads the plan from these events
    assert sorted((u["content_id"], u["planned_week"]) for u in updates) == sorted(
        [(items["glossary"], 1), (items["week 5 notes"], None)])


@pytest.mark.parametrize(("change", "field"), [
    ({"planned_week": 7}, "planned_week"),  # after the course's six weeks
    ({"planned_week": 0}, "'items', '1', 'planned_week'"),
    ({"content_id": "other course"}, "items"),
    ({"content_id": "duplicate"}, "items"),
])
def test_one_bad_change_refuses_the_whole_update(platform, planned, change, field):
    p, items = platform, planned["items"]
    second = {"content_id": items["week 2 video"], "planned_week": 3, **change}
    if change.get("content_id") == "other course":
        _, other_instructor = p.user("instructor")
        other = p.course(other_instructor)
        second["content_id"] = p.client.post("/api/v1/content", headers=other_instructor,
                                             json={"course_id": other, "title": "elsewhere"}).json()["id"]
    elif change.get("content_id") == "duplicate":
        second["content_id"] = items["glossary"]
    response = p.client.put(f"/api/v1/courses/{planned['id']}/plan", headers=planned["instructor"], json={
        "items": [{"content_id": items["glossary"], "planned_week": 2}, second]})
    assert response.status_code == 422, response.text
    assert field in str(response.json()["error"]["details"])
    plan = p.client.get(f"/api/v1/courses/{planned['id']}/plan", headers=planned["instructor"]).json()
    assert _by_title(plan)["glossary"]["planned_week"] is None  # nothing of it was stored


def _sign_in(platform: Platform, email: str):
    response = platform.client.post("/staff/login", data={"email": email, "password": PASSWORD},
                                    follow_redirects=False)
    assert response.status_code == 303, response.text


def test_the_plan_page_shows_the_weeks_and_saves_only_what_was_changed(platform, planned):
    p, items = platform, planned["items"]
    p.client.cookies.clear()
    _sign_in(p, planned["emails"]["instructor"])
    try:
        page = p.client.get(f"/staff/courses/{planned['id']}/plan")
        assert page.status_code == 200, page.text
        html = page.text
        assert 'id="week-3"' in html and "this week" in html and "Due: TMA 1" in html
        assert "Not in the plan" in html and "glossary" in html and 'class="badge behind"' in html
        assert f'name="week-{items["glossary"]}"' in html

        # Someone else moves the video to week 4 after this page was loaded; this form still shows week 2.
        moved = p.client.put(f"/api/v1/content/{items['week 2 video']}", headers=planned["instructor"],
                             json={"planned_week": 4})
        assert moved.status_code == 200
        form = {f"week-{items['glossary']}": "3", f"was-{items['glossary']}": "",
                f"week-{items['week 2 video']}": "2", f"was-{items['week 2 video']}": "2",  # untouched
                f"week-{items['week 5 notes']}": "", f"was-{items['week 5 notes']}": "5"}  # cleared
        saved = p.client.post(f"/staff/courses/{planned['id']}/plan", data=form, follow_redirects=False)
        assert saved.status_code == 303 and "saved=2" in saved.headers["location"]
        plan = _by_title(p.client.get(f"/api/v1/courses/{planned['id']}/plan",
                                      headers=planned["instructor"]).json())
        assert plan["glossary"]["planned_week"] == 3 and plan["week 5 notes"]["planned_week"] is None
        assert plan["week 2 video"]["planned_week"] == 4  # the other change was not overwritten
        assert "Saved: 2 items moved" in p.client.get(saved.headers["location"]).text

        bad = p.client.post(f"/staff/courses/{planned['id']}/plan",
                            data={f"week-{items['glossary']}": "soon", f"was-{items['glossary']}": "3"})
        assert bad.status_code == 422 and "not a week number" in bad.text
        late = p.client.post(f"/staff/courses/{planned['id']}/plan",
                             data={f"week-{items['glossary']}": "9", f"was-{items['glossary']}": "3"})
        assert late.status_code == 422 and "last week (6)" in late.text
        forged = p.client.post(f"/staff/courses/{planned['id']}/plan", headers={"Origin": "https://evil.example"},
                               data={f"week-{items['glossary']}": "1", f"was-{items['glossary']}": "3"})
        assert forged.status_code == 403
        assert _by_title(p.client.get(f"/api/v1/courses/{planned['id']}/plan",
                                      headers=planned["instructor"]).json())["glossary"]["planned_week"] == 3
    finally:
        p.client.cookies.clear()


def test_the_staff_home_links_each_course_plan_and_learners_are_refused(platform, planned):
    p = platform
    p.client.cookies.clear()
    try:
        assert p.client.get(f"/staff/courses/{planned['id']}/plan",
                            follow_redirects=False).headers["location"].startswith("/staff/login?next=")
        _sign_in(p, planned["emails"]["instructor"])
        assert f"/staff/courses/{planned['id']}/plan" in p.client.get("/staff/courses").text
        p.client.cookies.clear()
        _sign_in(p, planned["emails"]["learner"])
        assert p.client.get(f"/staff/courses/{planned['id']}/plan").status_code == 403
    finally:
        p.client.cookies.clear()


def test_an_erased_learner_is_no_longer_counted(platform, planned):
    import uuid

    from sqlalchemy import select

    from platform_api._models import Enrollment, User

    p = platform
    with p.app.state.sessions() as session:
        opener = session.scalar(select(User.id).join(Enrollment).where(
            Enrollment.course_id == uuid.UUID(planned["id"]), User.name == "learner 0"))
    assert p.client.delete(f"/api/v1/users/{opener}", headers=p.admin_headers).status_code == 204
    plan = p.client.get(f"/api/v1/courses/{planned['id']}/plan", headers=planned["instructor"]).json()
    reading = _by_title(plan)["week 1 reading"]
    assert plan["learners"] == 2 and reading["opened_by"] == 1 and not reading["behind"]  # 1 of 2, not 1 of 3


def test_two_writers_of_one_item_get_a_conflict_and_nothing_half_saved(platform, planned):
    """Another request wrote the item's next version first: the save is refused (409), all of it."""
    import uuid

    from platform_api._models import ContentVersion

    p, items = platform, planned["items"]
    with p.app.state.sessions() as session:
        session.add(ContentVersion(content_id=uuid.UUID(items["week 2 video"]), version=2, title="week 2 video",
                                   body="", file_path=None, accessibility={}, created_by=None))
        session.commit()
    response = p.client.put(f"/api/v1/courses/{planned['id']}/plan", headers=planned["instructor"], json={
        "items": [{"content_id": items["glossary"], "planned_week": 2},
                  {"content_id": items["week 2 video"], "planned_week": 3}]})
    assert response.status_code == 409 and "reload" in response.json()["error"]["message"]
    glossary = p.client.get(f"/api/v1/content/{items['glossary']}", headers=planned["instructor"]).json()
    assert glossary["version"] == 1 and glossary["planned_week"] is None  # the first item was rolled back too
    single = p.client.put(f"/api/v1/content/{items['week 2 video']}", headers=planned["instructor"],
                          json={"planned_week": 3})
    assert single.status_code == 409


def test_the_page_refuses_to_overwrite_a_week_someone_else_changed(platform, planned):
    p, items = platform, planned["items"]
    p.client.cookies.clear()
    _sign_in(p, planned["emails"]["instructor"])
    try:
        assert p.client.get(f"/staff/courses/{planned['id']}/plan?saved=abc").status_code == 200
        moved = p.client.put(f"/api/v1/content/{items['week 2 video']}", headers=planned["instructor"],
                             json={"planned_week": 4})
        assert moved.status_code == 200
        # this page still showed week 2 and its user typed 3
        stale = p.client.post(f"/staff/courses/{planned['id']}/plan", data={
            f"week-{items['week 2 video']}": "3", f"was-{items['week 2 video']}": "2",
            f"week-{items['glossary']}": "1", f"was-{items['glossary']}": ""})
        assert stale.status_code == 409 and "Someone else changed the week of &#39;week 2 video&#39;" in stale.text
        plan = _by_title(p.client.get(f"/api/v1/courses/{planned['id']}/plan",
                                      headers=planned["instructor"]).json())
        assert plan["week 2 video"]["planned_week"] == 4 and plan["glossary"]["planned_week"] is None
    finally:
        p.client.cookies.clear()


def test_a_content_editor_finds_the_plan_on_the_staff_home(platform, planned):
    p = platform
    editor_id, _ = p.user(name="Cora Creator")
    granted = p.client.post(f"/api/v1/users/{editor_id}/roles", headers=planned["instructor"], json={
        "role_name": "creator", "scope_type": "course", "scope_id": planned["id"]})
    assert granted.status_code == 201, granted.text
    email = p.client.get(f"/api/v1/users/{editor_id}", headers=p.admin_headers).json()["email"]
    p.client.cookies.clear()
    try:
        signed_in = p.client.post("/staff/login", data={"email": email, "password": PASSWORD},
                                  follow_redirects=False)
        assert signed_in.headers["location"] == "/staff/courses"  # not "My grades": they edit a course
        home = p.client.get("/staff/courses").text
        row = home[home.index(f'data-course="{planned["id"]}"'):]
        row = row[:row.index("</tr>")]
        assert "Course plan" in row and "you edit this course" in row and "/alerts" not in row
        assert p.client.get(f"/staff/courses/{planned['id']}/plan").status_code == 200
    finally:
        p.client.cookies.clear()


def test_a_course_is_not_shortened_before_its_planned_weeks(platform, planned):
    """Items planned after the new last week would make the plan unsavable (each week field is capped at the
    course's duration): the instructor re-plans them first."""
    p, url = platform, f"/api/v1/courses/{planned['id']}"
    for weeks, message in ((4, "1 content item planned after week 4 (the latest in week 5)"),
                           (1, "2 content items planned after week 1 (the latest in week 5)")):
        response = p.client.put(url, headers=planned["instructor"], json={"duration_weeks": weeks})
        assert response.status_code == 409, response.text
        assert message in response.json()["error"]["message"] and "/plan" in response.json()["error"]["message"]
    assert response.json()["error"]["details"] == {"field": "duration_weeks", "items_planned_later": 2,
                                                   "latest_planned_week": 5}
    assert p.client.get(url, headers=planned["instructor"]).json()["duration_weeks"] == 6  # nothing changed

    assert p.client.put(url, headers=planned["instructor"], json={"duration_weeks": 5}).status_code == 200
    moved = p.client.put(f"{url}/plan", headers=planned["instructor"], json={
        "items": [{"content_id": planned["items"]["week 5 notes"], "planned_week": 2}]})
    assert moved.status_code == 200, moved.text
    shortened = p.client.put(url, headers=planned["instructor"], json={"duration_weeks": 2})
    assert shortened.status_code == 200 and shortened.json()["duration_weeks"] == 2


def test_the_page_lets_an_item_keep_a_week_after_a_stored_shorter_duration(platform, planned):
    """A course stored shorter than its plan (before shortening was refused) still saves: the field of such an item
    allows its own week, so the browser does not block the whole form."""
    import uuid

    from platform_api._models import Course

    p, items = platform, planned["items"]
    with p.app.state.sessions() as session:
        session.get(Course, uuid.UUID(planned["id"])).duration_weeks = 4
        session.commit()
    p.client.cookies.clear()
    _sign_in(p, planned["emails"]["instructor"])
    try:
        html = p.client.get(f"/staff/courses/{planned['id']}/plan").text
        field = html[html.index(f'name="week-{items["week 5 notes"]}"'):]
        assert 'max="5"' in field[:field.index(">")]
        other = html[html.index(f'name="week-{items["week 2 video"]}"'):]
        assert 'max="4"' in other[:other.index(">")]
    finally:
        p.client.cookies.clear()
