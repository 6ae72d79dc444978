"""Grading job leases on both databases: a claim lapses unless renewed, a renewed one holds, and a worker that
lost its claim cannot record anything over the next claimant's work (the claim token fences it)."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from platform_fixtures import BACKENDS, fresh_database_url, platform_settings, queue_essay
from sqlalchemy import func, select

from learnloop.settings import Settings
from platform_api import api
from platform_api._models import Grade, GradingJob, GradingJobState, Submission
from platform_api.data import GradedBy, SubmissionStatus

LEASE = 60.0


def _suggestion(task, score: int) -> list[api.EssaySuggestion]:
    return [api.EssaySuggestion(question_id=task.essays[0].question_id, prompt_id=3, score=score, interval=None,
                                confidence=0.9, needs_review=False, reasons=[f"worker scored {score}"],
                                model_version="test", score_range=(0, 3))]


def _ai_grades(session, submission_id) -> list[Grade]:
    return list(session.scalars(select(Grade).where(Grade.submission_id == submission_id,
                                                    Grade.graded_by == GradedBy.ai)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_claim_nobody_renews_is_claimable_again_once_its_lease_runs_out(backend, tmp_path):
    for db_url in fresh_database_url(backend, tmp_path):
        with api.open_session(platform_settings(db_url, tmp_path)) as session:
            submission = queue_essay(session)[0]
            t0 = datetime.now(UTC)
            (first,) = api.claim_grading_tasks(session=session, now=t0, lease_seconds=LEASE)
            assert first.submission_id == submission and first.attempt == 1
            assert api.claim_grading_tasks(session=session, now=t0 + timedelta(seconds=LEASE - 1),
                                           lease_seconds=LEASE) == []
            (again,) = api.claim_grading_tasks(session=session, now=t0 + timedelta(seconds=LEASE + 1),
                                               lease_seconds=LEASE)
            assert again.submission_id == submission and again.attempt == 2
            assert again.claim_token != first.claim_token


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_renewed_claim_is_kept_past_its_first_lease(backend, tmp_path):
    for db_url in fresh_database_url(backend, tmp_path):
        with api.open_session(platform_settings(db_url, tmp_path)) as session:
            queue_essay(session)
            t0 = datetime.now(UTC)
            (task,) = api.claim_grading_tasks(session=session, now=t0, lease_seconds=LEASE)
            for beat in range(1, 7):  # a heartbeat every third of the lease, for two whole leases
                now = t0 + timedelta(seconds=beat * LEASE / 3)
                assert api.renew_grading_leases(session=session, claim_tokens=[task.claim_token], now=now,
                                                lease_seconds=LEASE) == {task.claim_token}
                assert api.claim_grading_tasks(session=session, now=now + timedelta(seconds=LEASE / 3 + 1),
                                               lease_seconds=LEASE) == []
            # The heartbeats stop (the worker died): one lease after the last one, the job is taken again.
            last = t0 + timedelta(seconds=6 * LEASE / 3)
            (again,) = api.claim_grading_tasks(session=session, now=last + timedelta(seconds=LEASE + 1),
                                               lease_seconds=LEASE)
            assert again.attempt == 2
            # The old token renews nothing any more: the worker learns it lost the job.
            assert api.renew_grading_leases(session=session, claim_tokens=[task.claim_token, uuid.uuid4()],
                                            lease_seconds=LEASE) == set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stale_workers_late_results_are_dropped_not_written_over_the_new_claim(backend, tmp_path, caplog):
    for db_url in fresh_database_url(backend, tmp_path):
        with api.open_session(platform_settings(db_url, tmp_path)) as session:
            submission = queue_essay(session)[0]
            t0 = datetime.now(UTC)
            (slow,) = api.claim_grading_tasks(session=session, now=t0, lease_seconds=LEASE)
            (fresh,) = api.claim_grading_tasks(session=session, now=t0 + timedelta(seconds=LEASE + 1),
                                               lease_seconds=LEASE)

            # The slow worker finishes while the new claimant still grades: every result of it is dropped.
            with caplog.at_level(logging.WARNING, logger="platform_api._grading_review"):
                assert api.record_ai_suggestion(session=session, submission_id=submission,
                                                claim_token=slow.claim_token, essays=_suggestion(slow, 0)) is None
                assert api.record_manual_grading(session=session, submission_id=submission,
                                                 claim_token=slow.claim_token, reasons=["stale"]) is False
                assert api.record_grading_failure(session=session, submission_id=submission,
                                                  claim_token=slow.claim_token, error="stale") is None
            assert caplog.text.count(f"claim {slow.claim_token} no longer holds") == 3
            assert _ai_grades(session, submission) == []
            job = session.scalar(select(GradingJob).where(GradingJob.submission_id == submission)
                                 .execution_options(populate_existing=True))
            assert (job.state, job.attempts, job.last_error, job.claim_token) == (
                GradingJobState.pending, 2, None, fresh.claim_token)
            assert session.get(Submission, submission).status is SubmissionStatus.queued_for_ai_grading

            grade_id = api.record_ai_suggestion(session=session, submission_id=submission,
                                                claim_token=fresh.claim_token, essays=_suggestion(fresh, 3))
            assert grade_id is not None
            # Later still, the slow worker's result cannot replace the recorded one either.
            assert api.record_ai_suggestion(session=session, submission_id=submission,
                                            claim_token=slow.claim_token, essays=_suggestion(slow, 0)) is None
            (grade,) = _ai_grades(session, submission)
            assert grade.id == grade_id and grade.score == 3 and grade.details["attempt"] == 2
            job = session.scalar(select(GradingJob).where(GradingJob.submission_id == submission)
                                 .execution_options(populate_existing=True))
            assert (job.state, job.claim_token, job.leased_until) == (GradingJobState.suggested, None, None)


def _race_late_result_against_reclaim(settings: Settings, slow) -> tuple[uuid.UUID | None, list]:
    """The slow worker records its result while another worker claims, each on its own connection, at once."""
    start, results = threading.Barrier(2), {}

    def record() -> None:
        with api.open_session(settings, migrate_first=False) as own:
            start.wait()
            results["recorded"] = api.record_ai_suggestion(session=own, submission_id=slow.submission_id,
                                                           claim_token=slow.claim_token, essays=_suggestion(slow, 1))

    def claim() -> None:
        with api.open_session(settings, migrate_first=False) as own:
            start.wait()
            results["claimed"] = api.claim_grading_tasks(session=own, lease_seconds=LEASE)

    threads = [threading.Thread(target=record), threading.Thread(target=claim)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results["recorded"], results["claimed"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_result_racing_a_reclaim_lands_on_exactly_one_side(backend, tmp_path):
    """The lease has just run out: the old worker records its result while another worker claims the job. One
    of them wins, never both (a job closed as suggested while it is also claimed afresh)."""
    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        api.migrate(settings)
        for _ in range(6):
            with api.open_session(settings, migrate_first=False) as session:
                submission = queue_essay(session)[0]
                past = datetime.now(UTC) - timedelta(seconds=LEASE + 1)
                (slow,) = api.claim_grading_tasks(session=session, now=past, lease_seconds=LEASE)
            recorded, claimed = _race_late_result_against_reclaim(settings, slow)
            assert (recorded is not None) != bool(claimed), (recorded, claimed)
            with api.open_session(settings, migrate_first=False) as session:
                assert session.scalar(select(func.count()).select_from(Grade).where(
                    Grade.submission_id == submission)) == int(recorded is not None)
                state = session.scalar(select(GradingJob.state).where(GradingJob.submission_id == submission))
                assert state is (GradingJobState.pending if claimed else GradingJobState.suggested)
                for task in claimed:  # finish it: the next round's claims see only their own job
                    assert api.record_manual_grading(session=session, submission_id=task.submission_id,
                                                     claim_token=task.claim_token, reasons=["race test"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_claim_token_is_indexed_so_renewals_do_not_scan_the_jobs(backend, tmp_path):
    from sqlalchemy import inspect

    for db_url in fresh_database_url(backend, tmp_path):
        settings = platform_settings(db_url, tmp_path)
        api.migrate(settings)
        with api.open_session(settings, migrate_first=False) as session:
            indexes = inspect(session.connection()).get_indexes("grading_jobs")
        assert {"name": "ix_grading_jobs_claim_token", "columns": ["claim_token"]} in [
            {"name": index["name"], "columns": index["column_names"]} for index in indexes]
