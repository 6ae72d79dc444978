"""Staff grade an essay by hand while the AI grading worker grades it: the staff grade wins, the job ends there
(no retry, no "needs manual grading"), the worker's late result is dropped (``already_graded``), and neither side
silently overwrites the other when one of them is held between its check and its commit."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from platform_fixtures import BACKENDS, fresh_database_url, hold_in_emit, platform_settings, queued_essay
from sqlalchemy import func, select, update

from grading_nlp._worker import grade_pending
from grading_nlp.data import AiGrade, GradeStatus
from learnloop.settings import Settings
from platform_api import _assessments, _grading_review, api
from platform_api._models import Grade, GradingJob, GradingJobState, OutboxEvent, Submission
from platform_api._schemas import GradeUpdate
from platform_api.data import GradedBy, SubmissionStatus

HELD = "held"


def _staff_grade(settings: Settings, submission: uuid.UUID, score: float = 1.0) -> None:
    with api.open_session(settings, migrate_first=False) as session:
        _grading_review.set_grade(session=session, actor=None, submission_id=submission,
                                  data=GradeUpdate(score=score, feedback="Graded by hand."))


def _suggestion(question: uuid.UUID, score: int = 3) -> api.EssaySuggestion:
    return api.EssaySuggestion(question_id=question, prompt_id=3, score=score, interval=None, confidence=0.9,
                               needs_review=False, reasons=["AI"], model_version="t", score_range=(0, 3))


def _state(settings: Settings, submission: uuid.UUID):
    with api.open_session(settings, migrate_first=False) as session:
        sub = session.get(Submission, submission)
        job = session.scalar(select(GradingJob).where(GradingJob.submission_id == submission))
        finals = [(g.graded_by, g.score) for g in session.scalars(
            select(Grade).where(Grade.submission_id == submission, Grade.is_final))]
        ai = session.scalar(select(func.count()).select_from(Grade).where(
            Grade.submission_id == submission, Grade.graded_by == GradedBy.ai))
        events = [e.event_type for e in session.scalars(select(OutboxEvent).where(
            OutboxEvent.event_type.in_(["grade.suggested", "grade.needs_manual_grading"])))]
        return sub.status, job, finals, ai, events


def _grader_that_lets_staff_grade_first(settings: Settings, submission: uuid.UUID, outcome: str):
    def grade(text: str, prompt_id: int) -> AiGrade:
        _staff_grade(settings, submission)  # the instructor grades while the worker grades
        if outcome == "error":
            raise RuntimeError("the grader crashed")
        if outcome == "manual":
            return AiGrade(status=GradeStatus.needs_manual_grading, score=None, interval=None, confidence=0.0,
                           needs_review=True, reasons=["too short"], model_version="t", prompt_id=prompt_id)
        return AiGrade(status=GradeStatus.suggested, score=3, interval=(2, 3), confidence=0.9, needs_review=False,
                       reasons=["AI"], model_version="t", prompt_id=prompt_id, score_range=(0, 3))
    return grade


@pytest.mark.parametrize("outcome", ["suggestion", "manual", "error"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_staff_grading_while_the_worker_grades_ends_the_job(backend, outcome, tmp_path):
    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        submission, _ = queued_essay(settings)

        # max_attempts=1: a failed try counted would close the job as needs_manual_grading at once
        report = grade_pending(settings=settings, grader=_grader_that_lets_staff_grade_first(
            settings, submission, outcome), max_attempts=1, backoff_seconds=0.0)

        assert report.as_dict() == {"claimed": 1, "suggested": 0, "needs_manual_grading": 0, "failed": 0,
                                    "gave_up": 0, "lease_lost": 0, "already_graded": 1}
        status, job, finals, ai, events = _state(settings, submission)
        assert status is SubmissionStatus.graded
        assert finals == [(GradedBy.instructor, 1.0)]
        assert ai == 0 and events == []
        assert (job.state, job.claim_token, job.leased_until) == (GradingJobState.staff_graded, None, None)
        # ... and nothing claims it again
        assert grade_pending(settings=settings, grader=lambda *_: pytest.fail("graded again")).claimed == 0


def _run(name: str, target, results: dict) -> threading.Thread:
    def run():
        try:
            results[name] = target()
        except Exception as exc:  # noqa: BLE001 - the test reads it
            results[name] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_suggestion_arriving_while_staff_grade_is_dropped(backend, tmp_path, monkeypatch):
    """Staff are held between reading the submission and committing their grade; the worker (whose session
    claimed the essay earlier) records its suggestion in that window. The staff grade must stay final and
    visible (status graded), the suggestion is dropped."""
    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        submission, question = queued_essay(settings)
        with api.open_session(settings, migrate_first=False) as worker:
            (task,) = api.claim_grading_tasks(session=worker, lease_seconds=60)
            inside = hold_in_emit(monkeypatch, _assessments, HELD)
            results: dict = {}
            staff = _run(HELD, lambda settings=settings, submission=submission: _staff_grade(settings, submission),
                         results)
            assert inside.wait(30)
            results["worker"] = api.record_ai_suggestion(session=worker, submission_id=submission,
                                                         claim_token=task.claim_token, essays=[_suggestion(question)])
            staff.join(60)

        assert results[HELD] is None, results
        assert results["worker"] is None, results
        status, job, finals, ai, events = _state(settings, submission)
        assert status is SubmissionStatus.graded
        assert finals == [(GradedBy.instructor, 1.0)]
        assert ai == 0 and events == []
        assert job.state is GradingJobState.staff_graded


def _hold_after_the_status_check(monkeypatch) -> threading.Event:
    """The thread HELD stops for a second at its second ``_questions_of`` (``record_ai_grade``: on the old code
    after it read the submission's status, before it wrote it)."""
    inside, questions_of, calls = threading.Event(), _assessments._questions_of, []

    def slow_questions_of(*args, **kwargs):
        if threading.current_thread().name == HELD:
            calls.append(1)
            if len(calls) == 2:
                inside.set()
                time.sleep(1.0)
        return questions_of(*args, **kwargs)

    monkeypatch.setattr(_assessments, "_questions_of", slow_questions_of)
    return inside


@pytest.mark.parametrize("hold", ["after_status_check", "before_commit"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_staff_grading_while_a_suggestion_commits_wins_and_sees_it(backend, hold, tmp_path, monkeypatch):
    """The worker is held inside its transaction (after checking the submission is not graded, or just before
    its commit) while staff grade: staff wait for it, then their grade is final, the submission stays graded
    (not turned back to ai_suggested), and the decision records the suggestion it replaced (so it counts in
    AI-vs-staff agreement)."""
    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        submission, question = queued_essay(settings)
        inside = (_hold_after_the_status_check(monkeypatch) if hold == "after_status_check"
                  else hold_in_emit(monkeypatch, _assessments, HELD))
        results: dict = {}

        def suggest(settings=settings, submission=submission, question=question):
            with api.open_session(settings, migrate_first=False) as worker:
                (task,) = api.claim_grading_tasks(session=worker, lease_seconds=60)
                return api.record_ai_suggestion(session=worker, submission_id=submission,
                                                claim_token=task.claim_token, essays=[_suggestion(question)])

        held = _run(HELD, suggest, results)
        assert inside.wait(30)
        _staff_grade(settings, submission)
        held.join(60)

        assert isinstance(results[HELD], uuid.UUID), results
        status, job, finals, ai, _ = _state(settings, submission)
        assert status is SubmissionStatus.graded
        assert finals == [(GradedBy.instructor, 1.0)]
        assert job.state is GradingJobState.suggested
        with api.open_session(settings, migrate_first=False) as session:
            final = session.scalar(select(Grade).where(Grade.submission_id == submission, Grade.is_final))
            assert final.details["ai_grade_id"] == str(results[HELD])
            assert final.details["previous_status"] == "ai_suggested"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_left_pending_for_a_graded_submission_is_closed_not_shown_as_waiting(backend, tmp_path):
    """``enqueue_missing_jobs`` reads the queued submissions, then inserts their jobs: a staff grade committing in
    between finds no job to close, and the job is created pending for a graded submission. Never claimed, it used to
    read as an essay waiting for ever (the operator row degraded after 15 min); the next claim pass closes it."""
    from datetime import UTC, datetime, timedelta

    from platform_api import _health

    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        submission, _ = queued_essay(settings)
        with api.open_session(settings, migrate_first=False) as session:
            _grading_review.enqueue_missing_jobs(session=session)
            # The race's outcome: graded while its job was being inserted, so the job stayed pending.
            session.execute(update(Submission).where(Submission.id == submission)
                            .values(status=SubmissionStatus.graded))
            session.commit()
            later = datetime.now(UTC) + timedelta(minutes=20)
            assert _health._grading(session, later).status == _health.OK  # a graded essay waits for nothing
            assert api.claim_grading_tasks(session=session, lease_seconds=60) == []
            assert session.scalar(select(GradingJob.state).where(GradingJob.submission_id == submission)) \
                is GradingJobState.staff_graded
