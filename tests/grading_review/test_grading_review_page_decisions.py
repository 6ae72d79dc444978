"""Decisions posted from the review page (/grading/courses/{id}): what a pasted note cannot break, and a page
loaded before a colleague decided the essay cannot silently replace that decision."""

from __future__ import annotations

from urllib.parse import unquote

from grading_review_fixtures import PASSWORD, essay

from grading_nlp.api import grade_pending_essays

SAME_SITE = {"Origin": "http://testserver"}


def _sign_in(api, person) -> None:
    api.client.cookies.clear()
    signed_in = api.client.post("/staff/login", data={"email": person.email, "password": PASSWORD},
                                follow_redirects=False)
    assert signed_in.status_code == 303, signed_in.text


def _post(api, path: str, form: dict):
    return api.client.post(path, data=form, headers=SAME_SITE, follow_redirects=False)


def test_a_nul_character_pasted_into_a_note_or_comment_is_dropped_not_a_server_error(api, review_settings):
    """A NUL pasted along with the learner note made accepting a 500, and in the override comment it was reported as
    "Score '2' is not a number"."""
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learners = [api.person("student", f"Lee {i}") for i in range(2)]
    accepted, overridden = (api.submit(learner, course, essay(0.6, seed=i)).json()["id"]
                            for i, learner in enumerate(learners))
    assert grade_pending_essays(settings=review_settings)["suggested"] == 2
    ai = {i["submission_id"]: i["ai_score"] for i in api.queue(instructor, course).json()["data"]}
    _sign_in(api, instructor)

    response = _post(api, f"/grading/submissions/{accepted}/accept",
                     {"course_id": course.id, "feedback": "Clear\x00 thesis."})
    assert response.status_code == 303 and "done=" in response.headers["location"], response.text
    other = 0.0 if ai[overridden] else 3.0
    response = _post(api, f"/grading/submissions/{overridden}/override",
                     {"course_id": course.id, "score": f"{other:g}", "comment": "Add\x00 evidence."})
    assert response.status_code == 303 and "done=" in response.headers["location"], response.headers["location"]

    seen = [api.client.get(f"/api/v1/submissions/{submission}", headers=learner.headers).json()
            for submission, learner in zip((accepted, overridden), learners, strict=True)]
    assert (seen[0]["score"], seen[0]["feedback"]) == (ai[accepted], "Clear thesis.")
    assert (seen[1]["score"], seen[1]["feedback"]) == (other, "Add evidence.")


def test_a_decision_from_a_page_loaded_before_a_colleague_decided_is_refused(api, review_settings):
    """The instructor overrides with a comment; the assistant, on a page loaded earlier, presses "accept": the
    learner used to get the AI grade and lose the instructor's comment without anyone being told."""
    instructor = api.person("instructor", "Ina Instructor")
    course = api.essay_course(instructor)
    assistant = api.person("student", "Tom Assistant")
    assert api.client.post(f"/api/v1/users/{assistant.id}/roles", headers=api.admin, json={
        "role_name": "teaching_assistant", "scope_type": "course", "scope_id": course.id}).status_code == 201
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.5, seed=7)).json()["id"]
    assert grade_pending_essays(settings=review_settings)["suggested"] == 1
    _sign_in(api, assistant)
    assert submission in api.client.get(f"/grading/courses/{course.id}").text  # the assistant's page, loaded now
    ai_score = api.queue(instructor, course).json()["data"][0]["ai_score"]
    final = 0.0 if ai_score else 3.0
    decided = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/override", headers=instructor.headers,
                              json={"score": final, "comment": "See my notes in the margin."})
    assert decided.status_code == 200, decided.text

    for path, form in ((f"/grading/submissions/{submission}/accept", {"course_id": course.id}),
                       (f"/grading/submissions/{submission}/override",
                        {"course_id": course.id, "score": f"{ai_score:g}", "comment": "Fine as is."})):
        refused = _post(api, path, form)
        assert refused.status_code == 303 and "error=" in refused.headers["location"], refused.headers["location"]
        page = api.client.get(refused.headers["location"]).text
        assert "already graded" in page and "Ina Instructor" in page and "not saved" in page

    seen = api.client.get(f"/api/v1/submissions/{submission}", headers=learner.headers).json()
    assert (seen["score"], seen["grade_label"], seen["feedback"]) == (
        final, "Instructor-graded", "See my notes in the margin.")
    # The JSON API still lets staff change a decision on purpose.
    again = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/accept", headers=instructor.headers)
    assert again.status_code == 200 and again.json()["grade_label"] == "AI-assisted"
    # A learner posting the page's form learns nothing about whether the essay is graded.
    _sign_in(api, learner)
    denied = unquote(_post(api, f"/grading/submissions/{submission}/accept", {"course_id": course.id})
                     .headers["location"])
    assert "submissions:grade" in denied and "already graded" not in denied


def test_essays_after_the_first_page_of_the_queue_are_reached_by_its_links(api, monkeypatch):
    """The queue page showed the first 200 essays under "250 submissions to decide" and no way to reach the rest."""
    from platform_api._routes import grading as grading_routes

    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    submitted = [api.submit(api.person("student", f"Lee {i}"), course, essay(0.5, seed=i)).json()["id"]
                 for i in range(2)]
    monkeypatch.setattr(grading_routes, "PAGE_ROWS", 1)
    _sign_in(api, instructor)

    first = api.client.get(f"/grading/courses/{course.id}").text
    second = api.client.get(f"/grading/courses/{course.id}", params={"offset": 1}).text

    assert "2 submissions to decide" in first and "Essays 1–1 of 2." in first
    assert 'href="?offset=1" rel="next">Next 1</a>' in first and 'rel="prev"' not in first
    assert "Essays 2–2 of 2." in second and 'href="?offset=0" rel="prev"' in second and 'rel="next"' not in second
    shown = [[s for s in submitted if f'data-submission="{s}"' in page] for page in (first, second)]
    assert sorted(shown[0] + shown[1]) == sorted(submitted) and len(shown[0]) == len(shown[1]) == 1
    assert ">2. " in second  # numbered across pages
