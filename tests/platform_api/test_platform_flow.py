"""End to end: admin creates an instructor and a course → publishes → a student enrolls → views content →
submits a quiz and an essay → the AI suggests → the instructor grades → events seen on every topic."""

from __future__ import annotations

import time
import uuid

from learnloop.events import Event, Topic
from platform_api import api


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_end_to_end_flow(platform):
    client = platform.client
    seen: list[Event] = []
    unsubscribe = api.subscribe(platform.app, "*", seen.append)
    try:
        instructor_id, instructor = platform.user("instructor", name="Grace")
        course_id = platform.course(instructor, publish=False, title="Statistics 101", credit_hours="3.0",
                                    duration_weeks=10)
        assert client.get(f"/api/v1/courses/{course_id}", headers=instructor).json()["status"] == "draft"
        published = client.put(f"/api/v1/courses/{course_id}", headers=instructor, json={"status": "published"})
        assert published.status_code == 200 and published.json()["status"] == "published"

        content = client.post("/api/v1/content", headers=instructor, json={
            "course_id": course_id, "kind": "video", "title": "Week 1", "body": "Distributions",
            "accessibility": {"captions_url": "https://example.org/w1.vtt", "alt_text": "A histogram"}})
        assert content.status_code == 201, content.text
        content_id = content.json()["id"]
        edited = client.put(f"/api/v1/content/{content_id}", headers=instructor, json={"body": "Distributions v2"})
        assert edited.json()["version"] == 2

        mc = client.post("/api/v1/questions", headers=instructor, json={
            "kind": "multiple_choice", "course_id": course_id, "prompt": "Mean of 1,2,3?",
            "options": ["1", "2", "3"], "correct": [1], "points": 2}).json()
        blank = client.post("/api/v1/questions", headers=instructor, json={
            "kind": "fill_in_the_blank", "course_id": course_id, "prompt": "The middle value is the ___",
            "accepted": ["median"]}).json()
        essay = client.post("/api/v1/questions", headers=instructor, json={
            "kind": "essay", "course_id": course_id, "prompt": "Explain variance.",
            "rubric": {"criteria": [{"name": "accuracy", "points": 4}, {"name": "clarity", "points": 2}]}}).json()
        assert essay["points"] == 6 and mc["answer_key"] == {"correct": [1]}
        quiz = client.post("/api/v1/assessments", headers=instructor, json={
            "course_id": course_id, "title": "Quiz 1", "kind": "quiz", "question_ids": [mc["id"], blank["id"]]})
        essay_task = client.post("/api/v1/assessments", headers=instructor, json={
            "course_id": course_id, "title": "Essay 1", "kind": "assignment", "question_ids": [essay["id"]]})
        assert quiz.status_code == 201 and essay_task.status_code == 201

        student_id, student = platform.user("student", name="Ada")
        enrollment_id = platform.enroll(course_id, student)
        listed = client.get(f"/api/v1/courses/{course_id}/content", headers=student).json()
        assert [c["id"] for c in listed["data"]] == [content_id] and listed["count"] == 1
        viewed = client.get(f"/api/v1/content/{content_id}", headers=student).json()
        assert viewed["body"] == "Distributions v2"
        assert client.get(f"/api/v1/content/{content_id}?version=1", headers=student).json()["body"] == "Distributions"
        activity = client.post("/api/v1/events", headers=student, json={
            "event_type": "video_play", "content_id": content_id, "session_id": "s-1", "payload": {"position_s": 3}})
        assert activity.status_code == 202 and activity.json()["topic"] == Topic.analytics.value
        progress = client.put(f"/api/v1/enrollments/{enrollment_id}/progress", headers=student, json={"progress": 40})
        assert progress.json()["progress"] == 40

        # The learner sees the questions but not the answer key.
        seen_quiz = client.get(f"/api/v1/assessments/{quiz.json()['id']}", headers=student).json()
        assert all(q["answer_key"] is None for q in seen_quiz["questions"])

        quiz_result = client.post("/api/v1/submissions", headers=student, json={
            "assessment_id": quiz.json()["id"], "answers": {mc["id"]: [1], blank["id"]: "  Median "}})
        assert quiz_result.status_code == 201, quiz_result.text
        assert quiz_result.json()["status"] == "graded" and quiz_result.json()["score"] == 3.0

        essay_result = client.post("/api/v1/submissions", headers=student, json={
            "assessment_id": essay_task.json()["id"], "answers": {essay["id"]: "Variance measures spread."}})
        submission_id = essay_result.json()["id"]
        assert essay_result.json()["status"] == "in_review" and essay_result.json()["score"] is None

        # The grading engineer's side: read the queue, write a suggestion.
        with api.open_session(platform.settings, migrate_first=False) as session:
            pending = [p for p in api.pending_essays(session=session) if str(p.submission_id) == submission_id]
            assert len(pending) == 1 and pending[0].essay == "Variance measures spread." and pending[0].max_points == 6
            api.record_ai_grade(session=session, submission_id=uuid.UUID(submission_id), score=4.0,
                                model_name="essay_grader", model_version="3", confidence=0.8)
        as_student = client.get(f"/api/v1/submissions/{submission_id}", headers=student).json()
        assert as_student["status"] == "in_review"  # not "ai_suggested": the suggestion is staff's until decided
        assert as_student["score"] is None and as_student["grades"] is None  # invisible until staff decide
        as_staff = client.get(f"/api/v1/submissions/{submission_id}", headers=instructor).json()
        assert [g["graded_by"] for g in as_staff["grades"]] == ["ai"] and as_staff["grades"][0]["score"] == 4.0
        assert as_staff["status"] == "ai_suggested"
        pending_row = [a for a in client.get(f"/api/v1/users/{student_id}/assessments", headers=student)
                       .json()["data"] if a["assessment_id"] == essay_task.json()["id"]][0]
        assert pending_row["status"] == "in_review" and pending_row["score"] is None

        graded = client.put(f"/api/v1/submissions/{submission_id}/grade", headers=instructor,
                            json={"score": 5, "feedback": "Good; define the formula next time."})
        assert graded.status_code == 200 and graded.json()["status"] == "graded"
        final = client.get(f"/api/v1/submissions/{submission_id}", headers=student).json()
        assert final["score"] == 5 and final["max_score"] == 6 and final["feedback"].startswith("Good")
        rows = client.get(f"/api/v1/users/{student_id}/assessments", headers=student).json()
        assert {r["title"]: r["score"] for r in rows["data"]} == {"Quiz 1": 3.0, "Essay 1": 5.0}

        enrollments = client.get(f"/api/v1/users/{student_id}/enrollments", headers=instructor).json()
        assert enrollments["count"] == 1 and enrollments["data"][0]["course_id"] == course_id

        def mine(event: Event) -> bool:
            return event.course_id == course_id or event.user_id in (student_id, instructor_id)

        expected_types = {"user.created", "course.created", "course.published", "content.created", "content.updated",
                          "question.created", "assessment.created", "enrollment.created",
                          "enrollment.progress_updated", "video_play", "submission.created", "grade.suggested",
                          "submission.graded"}
        assert _wait_for(lambda: expected_types <= {e.event_type for e in seen if mine(e)}), \
            expected_types - {e.event_type for e in seen if mine(e)}
        assert {e.topic for e in seen if mine(e)} == set(Topic)  # every topic carried something
        essay_event = next(e for e in seen if e.event_type == "submission.created"
                           and e.payload["submission_id"] == submission_id)
        assert essay_event.payload["status"] == "queued_for_ai_grading"
        assert essay_event.payload["essay_question_ids"] == [essay["id"]]
        graded_event = next(e for e in seen if e.event_type == "submission.graded"
                            and e.payload["submission_id"] == submission_id)
        assert graded_event.payload["ai_score"] == 4.0 and graded_event.payload["accepted_ai"] is False
        # The outbox keeps order: per course, ids increase in commit order.
        course_events = [e.event_type for e in seen if e.course_id == course_id]
        assert course_events.index("course.created") < course_events.index("course.published") \
            < course_events.index("enrollment.created") < course_events.index("submission.graded")
    finally:
        unsubscribe()


def test_accept_ai_grade(platform):
    client = platform.client
    _, instructor = platform.user("instructor")
    course_id = platform.course(instructor)
    essay = client.post("/api/v1/questions", headers=instructor, json={
        "kind": "essay", "course_id": course_id, "prompt": "Why?",
        "rubric": {"criteria": [{"name": "all", "points": 10}]}}).json()
    task = client.post("/api/v1/assessments", headers=instructor, json={
        "course_id": course_id, "title": "E", "question_ids": [essay["id"]]}).json()
    _, student = platform.user()
    platform.enroll(course_id, student)
    submission = client.post("/api/v1/submissions", headers=student,
                             json={"assessment_id": task["id"], "answers": {essay["id"]: "Because."}}).json()
    early = client.put(f"/api/v1/submissions/{submission['id']}/grade", headers=instructor, json={"accept_ai": True})
    assert early.status_code == 409 and "no AI suggestion" in early.json()["error"]["message"]
    with api.open_session(platform.settings, migrate_first=False) as session:
        api.record_ai_grade(session=session, submission_id=uuid.UUID(submission["id"]), score=7.5)
    accepted = client.put(f"/api/v1/submissions/{submission['id']}/grade", headers=instructor,
                          json={"accept_ai": True})
    assert accepted.status_code == 200 and accepted.json()["score"] == 7.5
    assert client.get(f"/api/v1/submissions/{submission['id']}", headers=student).json()["score"] == 7.5
