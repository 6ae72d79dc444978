"""The review workflow through the HTTP API: the worker's AI suggestion, who may see and decide it, what the
learner sees, labelled examples, the rolling QWK and the prediction-log lines monitoring reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from grading_review_fixtures import PROMPT, essay

from grading_nlp.api import grade_pending_essays
from platform_api.api import claim_grading_tasks, grading_agreement, labelled_essays, open_session


def _priority(item: dict) -> tuple:
    order = {"needs_manual_grading": 0, "ai_suggested": 1, "retrying": 2, "waiting_for_ai": 3}
    return order[item["review_state"]], not item["needs_review"], item["confidence"] or 0.0


def test_ai_suggestion_is_reviewed_by_course_staff_only_and_learner_sees_final_grades(api, review_settings):
    instructor = api.person("instructor", "Ina Instructor")
    stranger = api.person("instructor", "Other Instructor")
    course = api.essay_course(instructor)
    learners = [api.person("student", f"Learner {i}") for i in range(3)]
    submissions = []
    for i, (learner, quality) in enumerate(zip(learners, (0.9, 0.15, 0.5), strict=True)):
        response = api.submit(learner, course, essay(quality, seed=i))
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "in_review"  # what the learner reads until staff decide
        submissions.append(response.json()["id"])

    # Before the worker ran: staff see every submission waiting for the AI.
    waiting = api.queue(instructor, course).json()
    assert waiting["count"] == 3 and {i["review_state"] for i in waiting["data"]} == {"waiting_for_ai"}

    report = grade_pending_essays(settings=review_settings)
    assert report == {"claimed": 3, "suggested": 3, "needs_manual_grading": 0, "failed": 0, "gave_up": 0,
                      "lease_lost": 0, "already_graded": 0}

    # The learner sees neither the queue nor the AI grade of their own submission.
    assert api.queue(learners[0], course).status_code == 403
    own = api.client.get(f"/api/v1/submissions/{submissions[0]}", headers=learners[0].headers).json()
    assert own["status"] == "in_review" and own["score"] is None and own["grades"] is None
    assert own["grade_label"] is None
    # Another course's instructor can neither look nor act.
    assert api.queue(stranger, course).status_code == 403
    denied = api.client.post(f"/api/v1/submissions/{submissions[0]}/ai-grade/accept", headers=stranger.headers,
                             json={})
    assert denied.status_code == 403
    assert api.client.get(f"/api/v1/courses/{course.id}/grading-agreement",
                          headers=stranger.headers).status_code == 403

    queue = api.queue(instructor, course).json()
    assert queue["count"] == 3 and len(queue["data"]) == 3
    assert [_priority(i) for i in queue["data"]] == sorted(_priority(i) for i in queue["data"])
    item = queue["data"][0]
    assert item["review_state"] == "ai_suggested" and 0 <= item["ai_score"] <= 3 and item["max_score"] == 3
    assert 0 <= item["confidence"] <= 1 and item["reasons"] and item["model_version"].startswith("essay-p3-")
    assert item["essays"][0]["score_range"] == [0, 3] and item["essays"][0]["prompt_id"] == PROMPT
    assert item["essays"][0]["rubric"]["criteria"][0]["name"] == "Ideas"
    page = api.queue(instructor, course, limit=1, offset=1).json()
    assert page["count"] == 3 and [i["submission_id"] for i in page["data"]] == [queue["data"][1]["submission_id"]]

    by_id = {i["submission_id"]: i for i in queue["data"]}
    accepted, overridden = submissions[0], submissions[1]
    ai_score = by_id[accepted]["ai_score"]
    response = api.client.post(f"/api/v1/submissions/{accepted}/ai-grade/accept", headers=instructor.headers,
                               json={"feedback": "Well argued."})
    assert response.status_code == 200, response.text
    # Overriding with another score needs a comment for the learner.
    new_score = 3.0 if by_id[overridden]["ai_score"] != 3 else 0.0
    missing = api.client.post(f"/api/v1/submissions/{overridden}/ai-grade/override", headers=instructor.headers,
                              json={"score": new_score})
    assert missing.status_code == 422 and "comment" in missing.json()["error"]["message"]
    too_high = api.client.post(f"/api/v1/submissions/{overridden}/ai-grade/override", headers=instructor.headers,
                               json={"score": 4, "comment": "x"})
    assert too_high.status_code == 422
    response = api.client.post(f"/api/v1/submissions/{overridden}/ai-grade/override", headers=instructor.headers,
                               json={"score": new_score, "comment": "The evidence is thinner than it looks."})
    assert response.status_code == 200, response.text

    seen = api.client.get(f"/api/v1/submissions/{accepted}", headers=learners[0].headers).json()
    assert (seen["score"], seen["grade_label"], seen["feedback"]) == (ai_score, "AI-assisted", "Well argued.")
    seen = api.client.get(f"/api/v1/submissions/{overridden}", headers=learners[1].headers).json()
    assert (seen["score"], seen["grade_label"]) == (new_score, "Instructor-graded")
    listed = api.client.get(f"/api/v1/users/{learners[0].id}/assessments", headers=learners[0].headers).json()
    assert listed["data"][0]["grade_label"] == "AI-assisted" and listed["data"][0]["score"] == ai_score
    # The third learner's grade is still invisible.
    assert api.client.get(f"/api/v1/submissions/{submissions[2]}", headers=learners[2].headers).json()["score"] is None

    remaining = api.queue(instructor, course).json()
    assert [i["submission_id"] for i in remaining["data"]] == [submissions[2]]
    assert remaining["agreement"]["n"] == 2 and remaining["agreement"]["by_prompt"][0]["prompt_id"] == PROMPT

    with open_session(review_settings) as session:
        examples = {e.submission_id.hex: e for e in labelled_essays(session=session)}
        agreement = grading_agreement(session=session)
    assert examples[accepted.replace("-", "")].final_score == ai_score
    assert examples[accepted.replace("-", "")].accepted_ai is True
    assert examples[overridden.replace("-", "")].final_score == new_score
    assert examples[overridden.replace("-", "")].ai_score == by_id[overridden]["ai_score"]
    assert examples[overridden.replace("-", "")].essay.startswith(essay(0.15, seed=1)[:40])
    assert agreement["n"] == 2 and agreement["by_prompt"][0]["exact"] == 0.5

    # Each decision is a prediction-log line the drift monitor reads: prediction = AI score, label = staff score.
    from pipelines.monitoring.api import read_prediction_log

    log = read_prediction_log(model_name=f"essay_grader_p{PROMPT}", settings=review_settings)
    mine = log[log["submission_id"].isin([accepted, overridden])].set_index("submission_id")
    assert mine.loc[overridden, "prediction"] == by_id[overridden]["ai_score"]
    assert mine.loc[overridden, "label"] == new_score and mine.loc[accepted, "label"] == ai_score


def test_a_failing_grader_is_retried_with_backoff_and_the_submission_is_never_lost(api, review_settings):
    from grading_nlp.api import grade_essay

    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.7, seed=5)).json()["id"]
    calls = []

    def flaky(text: str, prompt_id: int):
        calls.append(prompt_id)
        if len(calls) <= 2:
            raise TimeoutError(f"model store busy (call {len(calls)})")
        return grade_essay(text, prompt_id, settings=review_settings)

    start = datetime.now(UTC)
    first = grade_pending_essays(settings=review_settings, grader=flaky, now=start)
    assert first["failed"] == 1 and first["gave_up"] == 0
    item = api.queue(instructor, course).json()["data"][0]
    assert item["submission_id"] == submission and item["review_state"] == "retrying"
    assert item["grading_attempts"] == 1 and "model store busy (call 1)" in item["last_error"]
    # Backoff: nothing is due again right away.
    assert grade_pending_essays(settings=review_settings, grader=flaky, now=start)["claimed"] == 0
    second = grade_pending_essays(settings=review_settings, grader=flaky, now=start + timedelta(seconds=31))
    assert second["failed"] == 1
    assert api.queue(instructor, course).json()["data"][0]["grading_attempts"] == 2
    assert grade_pending_essays(settings=review_settings, grader=flaky,
                                now=start + timedelta(seconds=31 + 59))["claimed"] == 0  # 60 s after try 2
    third = grade_pending_essays(settings=review_settings, grader=flaky, now=start + timedelta(seconds=31 + 61))
    assert third["suggested"] == 1 and len(calls) == 3
    item = api.queue(instructor, course).json()["data"][0]
    assert item["review_state"] == "ai_suggested" and item["grading_attempts"] == 3 and item["last_error"] is None
    assert item["ai_score"] is not None


def test_after_the_last_attempt_the_essay_goes_to_staff_for_manual_grading(api, review_settings):
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.4, seed=9)).json()["id"]

    def broken(text: str, prompt_id: int):
        raise RuntimeError("onnxruntime session crashed")

    start = datetime.now(UTC)
    assert grade_pending_essays(settings=review_settings, grader=broken, now=start, max_attempts=2,
                                backoff_seconds=1)["gave_up"] == 0
    last = grade_pending_essays(settings=review_settings, grader=broken, now=start + timedelta(seconds=2),
                                max_attempts=2, backoff_seconds=1)
    assert last["gave_up"] == 1
    assert grade_pending_essays(settings=review_settings, grader=broken,
                                now=start + timedelta(days=1))["claimed"] == 0  # closed, not retried forever
    item = api.queue(instructor, course).json()["data"][0]
    assert item["submission_id"] == submission and item["review_state"] == "needs_manual_grading"
    assert "failed 2 times" in item["reasons"][0] and "onnxruntime session crashed" in item["reasons"][0]
    # No AI suggestion to accept; grading by hand needs no comment.
    conflict = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/accept", headers=instructor.headers,
                               json={})
    assert conflict.status_code == 409
    graded = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/override", headers=instructor.headers,
                             json={"score": 2})
    assert graded.status_code == 200, graded.text
    seen = api.client.get(f"/api/v1/submissions/{submission}", headers=learner.headers).json()
    assert (seen["status"], seen["score"], seen["grade_label"]) == ("graded", 2.0, "Instructor-graded")


def test_a_claim_is_leased_so_two_workers_never_grade_one_submission(api, review_settings):
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    api.submit(api.person("student", "Lee"), course, essay(0.6, seed=2))
    now = datetime.now(UTC)
    with open_session(review_settings) as session:
        first = claim_grading_tasks(session=session, now=now, lease_seconds=60)
        assert len(first) == 1 and first[0].attempt == 1 and first[0].essays[0].prompt_id == PROMPT
        assert claim_grading_tasks(session=session, now=now + timedelta(seconds=30), lease_seconds=60) == []
        # The first worker died: the lease runs out and the job is taken again (a second attempt).
        again = claim_grading_tasks(session=session, now=now + timedelta(seconds=61), lease_seconds=60)
        assert [t.submission_id for t in again] == [first[0].submission_id] and again[0].attempt == 2
        assert again[0].claim_token != first[0].claim_token


def test_who_may_not_decide_learns_nothing_about_the_hidden_ai_score(api, review_settings):
    """Overriding checked "needs a comment" before authorization: a learner (or another course's instructor) got a
    422 for every score but the AI's own, which alone got the 403."""
    instructor = api.person("instructor", "Ina")
    stranger = api.person("instructor", "Other Instructor")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.6, seed=21)).json()["id"]
    assert grade_pending_essays(settings=review_settings)["suggested"] == 1
    for person in (learner, stranger):
        answers = set()
        for score in (0, 1, 2, 3, 0.5, 4, 1000):
            for comment in ("", "why"):
                response = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/override",
                                           headers=person.headers, json={"score": score, "comment": comment})
                answers.add((response.status_code, response.json()["error"]["code"]))
        accept = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/accept", headers=person.headers, json={})
        put = api.client.put(f"/api/v1/submissions/{submission}/grade", headers=person.headers,
                             json={"score": 1000})
        answers |= {(accept.status_code, accept.json()["error"]["code"]), (put.status_code, put.json()["error"]["code"])}
        assert answers == {(403, "permission_denied")}, person.email
    seen = api.client.get(f"/api/v1/submissions/{submission}", headers=learner.headers).json()
    assert seen["status"] == "in_review" and seen["score"] is None


def test_deciding_an_essay_again_leaves_monitoring_one_line_with_the_final_grade(api, review_settings):
    """Accept, override, then PUT /grade: three decisions. PUT /grade was not logged at all and the other two were
    both read, so drift QWK counted the essay twice, with the overridden label."""
    from pipelines.monitoring.api import read_prediction_log

    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.5, seed=31)).json()["id"]
    assert grade_pending_essays(settings=review_settings)["suggested"] == 1
    url = f"/api/v1/submissions/{submission}"
    assert api.client.post(f"{url}/ai-grade/accept", headers=instructor.headers, json={}).status_code == 200
    assert api.client.post(f"{url}/ai-grade/override", headers=instructor.headers,
                           json={"score": 0, "comment": "Off topic."}).status_code == 200
    assert api.client.put(f"{url}/grade", headers=instructor.headers, json={"score": 3}).status_code == 200

    folder = review_settings.data_path / "predictions" / "essay_grader"
    lines = [line for path in folder.glob("*.jsonl") for line in path.read_text().splitlines() if submission in line]
    assert len(lines) == 3  # every decision is logged ...
    log = read_prediction_log(model_name=f"essay_grader_p{PROMPT}", settings=review_settings)
    mine = log[log["submission_id"] == submission]
    assert len(mine) == 1 and mine["label"].item() == 3  # ... and monitoring reads the final one


def test_accepting_an_ai_grade_needs_no_body(api, review_settings):
    """README: "Accept (`POST /api/v1/submissions/{id}/ai-grade/accept`)". A newcomer posts it without a body (the
    feedback is optional); that was a 422 "body: Field required"."""
    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learner = api.person("student", "Lee")
    submission = api.submit(learner, course, essay(0.5, seed=41)).json()["id"]
    assert grade_pending_essays(settings=review_settings)["suggested"] == 1
    accepted = api.client.post(f"/api/v1/submissions/{submission}/ai-grade/accept", headers=instructor.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "graded" and accepted.json()["grade_label"] == "AI-assisted"
