"""Two staff deciding the same essay or alert from pages loaded before either decided, posting at the same moment:
exactly one decision is saved, the other is refused (Conflict) instead of silently replacing it. The first one
is held between its check and its commit so that the second arrives in exactly that window."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from platform_fixtures import BACKENDS, fresh_database_url, hold_in_emit, platform_settings, queued_essay
from sqlalchemy import func, select

from learnloop.errors import Conflict
from learnloop.settings import Settings
from platform_api import _alerts, _assessments, _grading_review, api
from platform_api._models import AlertOutcomeRecord, Enrollment, Grade
from platform_api._schemas import AiGradeAccept, AiGradeOverride
from platform_api.data import (
    AlertOutcome,
    AlertStatus,
    GradedBy,
    NewAlert,
    NewCourse,
    NewEnrollment,
    NewUser,
    UserRole,
)

FIRST = "first-decision"


def _race(settings: Settings, inside: threading.Event, first, second) -> dict[str, object]:
    results: dict[str, object] = {}

    def run(name: str, decide) -> None:
        with api.open_session(settings, migrate_first=False) as session:
            try:
                decide(session)
                results[name] = "saved"
            except Conflict as exc:
                results[name] = exc

    one = threading.Thread(target=run, args=(FIRST, first), name=FIRST)
    one.start()
    assert inside.wait(30)
    two = threading.Thread(target=run, args=("second", second), name="second")
    two.start()
    for thread in (one, two):
        thread.join(60)
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_staff_deciding_one_essay_at_once_save_one_decision(backend, tmp_path, monkeypatch):
    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        submission, question = queued_essay(settings)
        with api.open_session(settings) as session:
            (task,) = api.claim_grading_tasks(session=session, lease_seconds=60)
            assert api.record_ai_suggestion(session=session, submission_id=submission, claim_token=task.claim_token,
                                            essays=[api.EssaySuggestion(
                                                question_id=question, prompt_id=3, score=2, interval=None,
                                                confidence=0.9, needs_review=False, reasons=[], model_version="t",
                                                score_range=(0, 3))])
        inside = hold_in_emit(monkeypatch, _assessments, FIRST)

        results = _race(
            settings, inside,
            lambda s, submission=submission: _grading_review.accept_ai_grade(
                session=s, actor=None, submission_id=submission,
                data=AiGradeAccept(feedback="Fine."), undecided_only=True),
            lambda s, submission=submission: _grading_review.override_ai_grade(
                session=s, actor=None, submission_id=submission,
                data=AiGradeOverride(score=1, comment="Too generous."), undecided_only=True))

        assert results[FIRST] == "saved"
        assert isinstance(results["second"], Conflict), results
        with api.open_session(settings, migrate_first=False) as session:
            (final,) = session.scalars(select(Grade).where(Grade.submission_id == submission, Grade.is_final))
            assert (final.graded_by, final.score, final.feedback) == (GradedBy.instructor, 2.0, "Fine.")
            assert session.scalar(select(func.count()).select_from(Grade).where(
                Grade.submission_id == submission, Grade.graded_by == GradedBy.instructor)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_staff_resolving_one_alert_at_once_save_one_verdict(backend, tmp_path, monkeypatch):
    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        with api.open_session(settings) as session:
            teacher, learner = api.create_users(session=session, users=[
                NewUser(email="t@example.org", name="Ina", role=UserRole.instructor),
                NewUser(email="l@example.org", name="Lee", metadata={"id_student": 11391})])
            (course,) = api.create_courses(session=session, courses=[NewCourse(
                title="AAA", instructor_id=teacher, metadata={"presentation": "AAA-2014J"})])
            api.enroll_users(session=session, enrollments=[NewEnrollment(user_id=learner, course_id=course)])
            (enrollment,) = session.scalars(select(Enrollment.id).where(Enrollment.course_id == course))
            (alert,) = api.record_alerts(session=session, now=datetime.now(UTC), alerts=[NewAlert(
                enrollment_id=enrollment, risk_score=0.8, threshold=0.7, model_name="risk", model_version="1",
                drivers=[], actions=[])])
        inside = hold_in_emit(monkeypatch, _alerts, FIRST)

        def verdict(outcome: AlertOutcome, alert=alert):
            return lambda s: _alerts.record_outcome(session=s, actor=None, alert_id=alert, outcome=outcome,
                                                    action=None, note=outcome.value, open_only=True)

        results = _race(settings, inside, verdict(AlertOutcome.not_useful), verdict(AlertOutcome.dismissed))

        assert results[FIRST] == "saved"
        assert isinstance(results["second"], Conflict), results
        with api.open_session(settings, migrate_first=False) as session:
            assert _alerts.get_alert(session=session, actor=None, alert_id=alert).alert.status is \
                AlertStatus.not_useful
            assert [r.outcome for r in session.scalars(select(AlertOutcomeRecord).where(
                AlertOutcomeRecord.alert_id == alert))] == [AlertOutcome.not_useful]
