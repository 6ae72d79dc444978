"""Bad essays get a clear answer — a validation error or "needs manual grading" with the reason — never a crash,
and the submission is never lost: it stays in the course's queue for staff to grade by hand."""

from __future__ import annotations

import uuid

from grading_review_fixtures import essay

from grading_nlp.api import grade_pending_essays
from platform_api.api import open_session, record_submissions
from platform_api.data import NewSubmission


def _only_item(api, instructor, course) -> dict:
    queue = api.queue(instructor, course).json()
    assert queue["count"] == 1, queue
    return queue["data"][0]


def test_an_empty_essay_needs_manual_grading(api, review_settings):
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    response = api.submit(learner, course, "   ")
    assert response.status_code == 201 and response.json()["status"] == "in_review"
    assert grade_pending_essays(settings=review_settings)["needs_manual_grading"] == 1
    item = _only_item(api, instructor, course)
    assert item["submission_id"] == response.json()["id"] and item["review_state"] == "needs_manual_grading"
    assert "empty or shorter than 5 words" in item["reasons"][0] and item["ai_score"] is None
    # Staff grade it by hand; the learner sees that grade.
    graded = api.client.post(f"/api/v1/submissions/{item['submission_id']}/ai-grade/override",
                             headers=instructor.headers, json={"score": 0, "comment": "Nothing was submitted."})
    assert graded.status_code == 200, graded.text
    seen = api.client.get(f"/api/v1/submissions/{item['submission_id']}", headers=learner.headers).json()
    assert (seen["score"], seen["grade_label"]) == (0.0, "Instructor-graded")


def test_a_200000_character_essay_is_refused_by_the_api_and_not_ai_graded_when_imported(api, review_settings):
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    huge = ("The cyclist rides on through the desert heat. " * 5000)[:200_000]
    response = api.submit(learner, course, huge)
    assert response.status_code == 422, response.text
    assert "at most 100000 characters" in response.json()["error"]["message"]
    assert api.queue(instructor, course).json()["count"] == 0  # nothing half-created

    # The same essay arriving by import (no HTTP size limit) is kept and handed to staff.
    with open_session(review_settings) as session:
        [submission_id] = record_submissions(session=session, submissions=[NewSubmission(
            assessment_id=uuid.UUID(course.assessment_id), user_id=uuid.UUID(learner.id),
            answers={course.question_id: huge})])
    assert grade_pending_essays(settings=review_settings)["needs_manual_grading"] == 1
    item = _only_item(api, instructor, course)
    assert item["submission_id"] == str(submission_id) and item["review_state"] == "needs_manual_grading"
    assert "200,000 characters" in item["reasons"][0] and len(item["essays"][0]["essay"]) == 200_000


def test_non_utf8_text_is_a_validation_error_over_http_and_flagged_when_it_reaches_the_grader(api, review_settings):
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    api.client.post(f"/api/v1/courses/{course.id}/enrollments", headers=learner.headers)
    body = (b'{"assessment_id": "' + course.assessment_id.encode() + b'", "answers": {"' + course.question_id.encode()
            + b'": "Caf\xe9 \xff\xfe essay"}}')
    response = api.client.post("/api/v1/submissions", content=body,
                               headers={**learner.headers, "Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text  # a clear client error, never a 500
    assert response.json()["error"]["message"], response.text
    print("non-UTF-8 body answer:", response.status_code, response.json()["error"])
    # A lone surrogate escape is valid JSON but not text that can be stored.
    escaped = (b'{"assessment_id": "' + course.assessment_id.encode() + b'", "answers": {"'
               + course.question_id.encode() + b'": "bad \\ud800 text"}}')
    surrogate = api.client.post("/api/v1/submissions", content=escaped,
                                headers={**learner.headers, "Content-Type": "application/json"})
    assert surrogate.status_code == 422 and "Unicode" in surrogate.json()["error"]["message"]

    # Bytes decoded leniently by an import (undecodable bytes kept as surrogate escapes) still get graded, with a
    # note telling staff to check the text.
    text = (essay(0.6, seed=4).encode() + b" \xff\xfe").decode("utf-8", errors="surrogateescape")
    with open_session(review_settings) as session:
        record_submissions(session=session, submissions=[NewSubmission(
            assessment_id=uuid.UUID(course.assessment_id), user_id=uuid.UUID(learner.id),
            answers={course.question_id: text})])
    assert grade_pending_essays(settings=review_settings)["suggested"] == 1
    item = _only_item(api, instructor, course)
    assert item["review_state"] == "ai_suggested" and item["needs_review"] is True
    assert any("not valid Unicode" in reason for reason in item["reasons"])
    assert item["essays"][0]["essay"].endswith(" ??")  # shown with "?" for the bytes nobody can read
    seen = api.client.get(f"/api/v1/submissions/{item['submission_id']}", headers=learner.headers)
    assert seen.status_code == 200 and seen.json()["answers"][course.question_id].endswith(" ??")


def test_an_essay_without_a_trained_model_or_without_a_prompt_needs_manual_grading(api, review_settings):
    instructor = api.person("instructor", "Ina")
    untrained = api.essay_course(instructor, rubric_prompt=8)  # no model trained for ASAP prompt 8
    unlinked = api.essay_course(instructor, rubric_prompt=None)  # no ASAP prompt named at all
    by_metadata = api.essay_course(instructor, rubric_prompt=None, assessment_prompt=3)
    learner = api.person("student", "Lee")
    for course in (untrained, unlinked, by_metadata):
        assert api.submit(learner, course, essay(0.7, seed=11)).status_code == 201
    report = grade_pending_essays(settings=review_settings)
    assert report["needs_manual_grading"] == 2 and report["suggested"] == 1

    item = _only_item(api, instructor, untrained)
    assert item["review_state"] == "needs_manual_grading" and item["essays"][0]["prompt_id"] == 8
    assert "No AI grading model is trained for prompt 8" in item["reasons"][0]
    assert item["essays"][0]["score_range"] == [0, 60]  # the rubric scale of prompt 8 is still shown
    item = _only_item(api, instructor, unlinked)
    assert item["review_state"] == "needs_manual_grading" and item["essays"][0]["prompt_id"] is None
    assert "linked to no AI grading model" in item["reasons"][0]
    # The assessment's metadata.essay_prompt links a question whose rubric names no prompt.
    item = _only_item(api, instructor, by_metadata)
    assert item["review_state"] == "ai_suggested" and item["essays"][0]["prompt_id"] == 3


def test_override_scores_that_are_not_numbers_or_out_of_range_are_refused(api, review_settings):
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.5, seed=3)).json()["id"]
    grade_pending_essays(settings=review_settings)
    url = f"/api/v1/submissions/{submission}/ai-grade/override"
    for body in ({"score": -1, "comment": "x"}, {"score": "NaN", "comment": "x"}, {"comment": "x"},
                 {"score": 1, "comment": "x", "extra": 1}):
        response = api.client.post(url, headers=instructor.headers, json=body)
        assert response.status_code == 422, (body, response.text)
    missing = api.client.post(f"/api/v1/submissions/{uuid.uuid4()}/ai-grade/accept", headers=instructor.headers,
                              json={})
    assert missing.status_code == 404
    seen = api.client.get(f"/api/v1/submissions/{submission}", headers=learner.headers).json()
    assert seen["status"] == "in_review" and seen["score"] is None


def test_an_unreadable_essay_prompt_is_refused_and_one_already_stored_means_manual_grading(api, review_settings):
    """``"²".isdigit()`` is true but ``int("²")`` fails: one assessment with that essay_prompt stopped the grading
    worker for every course and made its grading queue a 500."""
    from sqlalchemy import update

    from platform_api._models import Assessment

    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor, rubric_prompt=None)
    for bad in ("²", 99, True, "3.0", [3]):
        response = api.client.post("/api/v1/assessments", headers=instructor.headers, json={
            "course_id": course.id, "title": "Essay 2", "question_ids": [course.question_id],
            "metadata": {"essay_prompt": bad}})
        assert response.status_code == 422, (bad, response.text)
        assert "use one of 1, 2, 3, 4, 5, 6, 7, 8" in response.json()["error"]["message"]
    named = api.client.post("/api/v1/assessments", headers=instructor.headers, json={
        "course_id": course.id, "title": "Essay 3", "question_ids": [course.question_id],
        "metadata": {"essay_prompt": " 3"}})
    assert named.status_code == 201 and named.json()["metadata"]["essay_prompt"] == 3

    with open_session(review_settings) as session:  # what the API accepted before it checked
        session.execute(update(Assessment).where(Assessment.id == uuid.UUID(course.assessment_id))
                        .values(metadata_={"essay_prompt": "²"}))
        session.commit()
    learner = api.person("student", "Lee")
    assert api.submit(learner, course, essay(0.7, seed=12)).status_code == 201
    assert api.queue(instructor, course).status_code == 200
    assert grade_pending_essays(settings=review_settings)["needs_manual_grading"] == 1
    item = _only_item(api, instructor, course)
    assert item["review_state"] == "needs_manual_grading" and item["essays"][0]["prompt_id"] is None
    assert "linked to no AI grading model" in item["reasons"][0]
