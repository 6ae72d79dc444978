"""The one staff sign-in shared by the grading pages (/grading) and the alerts pages (/staff): the cookie's
attributes, where staff and learners land, the old URLs' redirects, no open redirect, the same-origin check on
form posts, and that the JSON API ignores the cookie. No browser, no grader model (see the *_browser tests)."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from grading_review_fixtures import PASSWORD, Api, make_app, platform_settings


@pytest.fixture
def web(tmp_path):
    settings = platform_settings(tmp_path / "var", tmp_path / "platform.db")
    app, _ = make_app(settings)
    with TestClient(app, follow_redirects=False) as client:
        api = Api(client)
        instructor = api.person("instructor", "Ina Instructor")
        learner = api.person("student", "Lea Learner")
        course = api.essay_course(instructor)
        yield client, api, instructor, learner, course


def _sign_in(client: TestClient, email: str, next: str = ""):
    client.cookies.clear()
    return client.post("/staff/login", data={"email": email, "password": PASSWORD, "next": next})


def test_one_cookie_and_landing_pages(web):
    client, _, instructor, learner, course = web
    response = _sign_in(client, instructor.email)
    assert response.status_code == 303 and response.headers["location"] == "/staff/courses"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("learnloop_staff_token=")
                  and "Max-Age=0" not in c and "expires=Thu, 01 Jan 1970" not in c)
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    home = client.get("/staff/courses")
    assert home.status_code == 200
    assert f'href="/grading/courses/{course.id}"' in home.text
    assert f'href="/staff/courses/{course.id}/alerts"' in home.text
    assert "Essays waiting" in home.text and "Open alerts" in home.text
    # The same cookie opens the grading queue and the alerts page of the course.
    assert client.get(f"/grading/courses/{course.id}").status_code == 200
    assert client.get(f"/staff/courses/{course.id}/alerts").status_code == 200
    assert client.get("/grading").headers["location"] == "/staff/courses"
    # The JSON API reads bearer tokens only: the cookie alone is not a credential there.
    assert client.get(f"/api/v1/courses/{course.id}/grading-queue").status_code == 401

    response = _sign_in(client, learner.email)
    assert response.headers["location"] == "/grading/my-grades"
    assert client.get("/grading/my-grades").status_code == 200
    assert "not on the staff of any course" in client.get("/staff/courses").text
    assert client.get(f"/grading/courses/{course.id}").status_code == 403
    assert client.get(f"/staff/courses/{course.id}/alerts").status_code == 403

    # Sign-out clears it for every page.
    out = client.post("/staff/logout")
    assert out.headers["location"] == "/staff/login"
    assert client.get("/grading/my-grades").headers["location"].startswith("/staff/login?next=")


def test_targets_old_urls_and_no_open_redirect(web):
    client, _, instructor, _, course = web
    queue = f"/grading/courses/{course.id}"
    assert client.get(queue).headers["location"] == f"/staff/login?next={queue.replace('/', '%2F')}"
    assert _sign_in(client, instructor.email, next=queue).headers["location"] == queue
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/api/v1/users"):
        assert _sign_in(client, instructor.email, next=evil).headers["location"] == "/staff/courses"
    old = client.get("/grading/login", params={"next": "/grading/my-grades"})
    assert old.status_code == 303 and old.headers["location"] == "/staff/login?next=%2Fgrading%2Fmy-grades"
    client.cookies.clear()
    posted = client.post("/grading/login", data={"email": instructor.email, "password": PASSWORD})
    assert posted.status_code == 307 and posted.headers["location"] == "/staff/login"
    wrong = client.post("/staff/login", data={"email": instructor.email, "password": "not it"})
    assert wrong.status_code == 401 and 'role="alert"' in wrong.text
    assert "learnloop_staff_token" not in client.cookies


def test_form_posts_from_another_site_are_refused(web):
    client, _, instructor, _, course = web
    _sign_in(client, instructor.email)
    evil = {"Origin": "https://evil.example"}
    form = {"course_id": course.id, "score": "1", "comment": "x"}
    refused = client.post(f"/grading/submissions/{uuid.uuid4()}/override", data=form, headers=evil)
    assert refused.status_code == 403 and "must be sent from the learnloop pages" in refused.text
    refused = client.post(f"/staff/alerts/{uuid.uuid4()}/outcome", data={"outcome": "dismissed"},
                          headers={"Referer": "https://evil.example/page"})
    assert refused.status_code == 403
    # Same origin passes the check (then the unknown submission is reported on the queue page).
    same = client.post(f"/grading/submissions/{uuid.uuid4()}/override", data=form,
                       headers={"Origin": "http://testserver"})
    assert same.status_code == 303 and "error=" in same.headers["location"]


def test_a_decision_posted_after_the_sign_in_expired_is_saved_after_signing_in_again(web):
    """Thirty minutes on one essay: the cookie is gone when the grade is posted. The sign-in page carries the form,
    and once signed in the browser posts it again: the grade is saved, not lost to a 405 or a blank page."""
    from datetime import UTC, datetime

    from grading_review_fixtures import essay

    from grading_nlp.api import grade_pending_essays

    client, api, instructor, learner, course = web
    submission = api.submit(learner, course, essay(0.4, seed=3)).json()["id"]

    def broken(text: str, prompt_id: int):
        raise RuntimeError("no model here")

    assert grade_pending_essays(settings=client.app.state.settings, grader=broken, now=datetime.now(UTC),
                                max_attempts=1)["gave_up"] == 1  # needs manual grading: no AI suggestion needed
    client.cookies.clear()  # the sign-in expired
    form = {"course_id": course.id, "score": "2", "comment": 'Good "thesis" & <evidence>'}
    expired = client.post(f"/grading/submissions/{submission}/override", data=form,
                          headers={"Origin": "http://testserver"})
    assert expired.status_code == 401 and "sign-in has expired" in expired.text
    assert 'name="resume.comment" value="Good &#34;thesis&#34; &amp; &lt;evidence&gt;"' in expired.text
    assert f'name="resume_action" value="/grading/submissions/{submission}/override"' in expired.text

    signed_in = client.post("/staff/login", headers={"Origin": "http://testserver"}, data={
        "email": instructor.email, "password": PASSWORD, "next": "",
        "resume_action": f"/grading/submissions/{submission}/override",
        **{f"resume.{name}": value for name, value in form.items()}})
    assert signed_in.status_code == 200 and 'id="resume"' in signed_in.text
    assert f'action="/grading/submissions/{submission}/override"' in signed_in.text
    assert "learnloop_staff_token" in client.cookies
    # What the page's form posts (its script submits it; a button does too without scripts):
    saved = client.post(f"/grading/submissions/{submission}/override", data=form,
                        headers={"Origin": "http://testserver"})
    assert saved.status_code == 303 and "done=" in saved.headers["location"], saved.headers.get("location")
    seen = client.get(f"/api/v1/submissions/{submission}", headers=learner.headers).json()
    assert (seen["status"], seen["score"]) == ("graded", 2.0)

    # Another site's post (it never carries the SameSite cookie, so it always looks signed out) is not carried:
    # otherwise the next staff member to sign in would post the attacker's grade from our own page.
    client.cookies.clear()
    forged = client.post(f"/grading/submissions/{submission}/override", data=form,
                         headers={"Origin": "https://evil.example"})
    assert forged.status_code == 303 and forged.headers["location"] == "/staff/login"
    unknown = client.post(f"/grading/submissions/{submission}/override", data=form)  # no Origin, no Referer
    assert unknown.status_code == 303 and "resume" not in unknown.text
    refused = client.post("/staff/login", headers={"Origin": "https://evil.example"}, data={
        "email": instructor.email, "password": PASSWORD, "resume_action": f"/grading/submissions/{submission}/override",
        **{f"resume.{name}": value for name, value in form.items()}})
    assert refused.status_code == 401 and "learnloop_staff_token" not in client.cookies

    # A whole course plan (two fields per item) is carried too: more than Starlette's default 1,000 fields.
    big = {f"resume.week-{uuid.uuid4()}": "3" for _ in range(1500)}
    carried = client.post("/staff/login", headers={"Origin": "http://testserver"}, data={
        "email": instructor.email, "password": PASSWORD, "resume_action": f"/staff/courses/{course.id}/plan", **big})
    assert carried.status_code == 200 and carried.text.count('type="hidden" name="week-') == 1500

    # A resume_action pointing off our pages is ignored: a plain sign-in, nothing posted anywhere.
    client.cookies.clear()
    plain = client.post("/staff/login", data={"email": instructor.email, "password": PASSWORD,
                                              "resume_action": "https://evil.example/x", "resume.score": "1"})
    assert plain.status_code == 303 and plain.headers["location"] == "/staff/courses"


def test_a_browser_on_a_page_gets_an_error_page_for_a_malformed_or_unknown_address(web):
    client = web[0]
    html = {"Accept": "text/html,application/xhtml+xml"}
    bad = client.get("/staff/courses/not-a-course-id/alerts", headers=html)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "course_id" in bad.text and "<h1>Cannot do that</h1>" in bad.text
    missing = client.get("/grading/no-such-page", headers=html)
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text
    # Scripts (no HTML in Accept) and the JSON API keep the JSON errors.
    assert client.get("/staff/courses/not-a-course-id/alerts").json()["error"]["code"] == "invalid_input"
    assert client.get("/api/v1/courses/not-an-id", headers=html).headers["content-type"] == "application/json"
