"""The grading worker's leases with real clocks and processes: a slow worker renews and keeps its essay, a worker
that could not renew has its late suggestion dropped, and a SIGKILLed worker's essay is graded by another one
about a lease later (it waited 5 minutes before leases were renewed)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from grading_review_fixtures import fixed_grade, platform_settings, queue_essay
from sqlalchemy import select

from grading_nlp.api import grade_pending_essays
from learnloop.settings import Settings
from platform_api import api as platform
from platform_api._models import Grade, GradingJob, GradingJobState
from platform_api.data import GradedBy

REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, lease_seconds: float) -> Settings:
    settings = platform_settings(tmp_path / "var", tmp_path / "platform.db")
    return settings.model_copy(update={"grading_lease_seconds": lease_seconds})


def _job(settings: Settings, submission) -> GradingJob:
    with platform.open_session(settings, migrate_first=False) as session:
        job = session.scalar(select(GradingJob).where(GradingJob.submission_id == submission))
    if job.leased_until is not None and job.leased_until.tzinfo is None:
        job.leased_until = job.leased_until.replace(tzinfo=UTC)  # SQLite reads back naive UTC
    return job


def _ai_scores(settings: Settings, submission) -> list[tuple[float, int]]:
    with platform.open_session(settings, migrate_first=False) as session:
        grades = session.scalars(select(Grade).where(Grade.submission_id == submission,
                                                     Grade.graded_by == GradedBy.ai))
        return [(grade.score, grade.details["attempt"]) for grade in grades]


def _in_thread(target) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(target()), daemon=True)
    thread.start()
    return thread, result


def test_a_slow_worker_renews_its_claim_and_keeps_the_essay_past_the_lease(tmp_path):
    lease = 1.5
    settings = _settings(tmp_path, lease)
    submission = queue_essay(settings)
    grading, finish = threading.Event(), threading.Event()

    def slow(text: str, prompt_id: int):
        grading.set()
        finish.wait(30)
        return fixed_grade(2)

    worker, report = _in_thread(lambda: grade_pending_essays(settings=settings, grader=slow))
    assert grading.wait(30)
    seen, others_claimed = [], 0
    deadline = time.monotonic() + 3 * lease
    while time.monotonic() < deadline:  # another worker polls all along: three whole leases
        others_claimed += grade_pending_essays(settings=settings, grader=lambda text, prompt: fixed_grade(0))["claimed"]
        before = datetime.now(UTC)
        seen.append((before, _job(settings, submission).leased_until, datetime.now(UTC)))
        time.sleep(0.1)
    finish.set()
    worker.join(30)

    assert others_claimed == 0
    assert report == {"claimed": 1, "suggested": 1, "needs_manual_grading": 0, "failed": 0, "gave_up": 0,
                      "lease_lost": 0, "already_graded": 0}
    assert _ai_scores(settings, submission) == [(2.0, 1)]
    # Kept by renewals, not by a long lease: the lease moved forward again and again, never far ahead.
    assert len({until for _, until, _ in seen}) >= 4
    assert all(before < until <= after + timedelta(seconds=lease) for before, until, after in seen)


def test_a_worker_that_could_not_renew_has_its_late_suggestion_dropped(tmp_path, monkeypatch, caplog):
    stalled = _settings(tmp_path, 0.6)
    healthy = stalled.model_copy(update={"grading_lease_seconds": 30.0})
    submission = queue_essay(stalled)
    renew, failed_renewals = platform.renew_grading_leases, []

    def renew_unless_stalled(**kwargs):
        if kwargs["lease_seconds"] == stalled.grading_lease_seconds:
            failed_renewals.append(set(kwargs["claim_tokens"]))
            raise ConnectionError("the database is unreachable from this worker")
        return renew(**kwargs)

    monkeypatch.setattr(platform, "renew_grading_leases", renew_unless_stalled)
    grading, finish = threading.Event(), threading.Event()

    def slow(text: str, prompt_id: int):
        grading.set()
        finish.wait(30)
        return fixed_grade(0)

    with caplog.at_level(logging.WARNING):
        worker, stale_report = _in_thread(lambda: grade_pending_essays(settings=stalled, grader=slow))
        assert grading.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the other worker takes the essay over once the lease ran out
            if grade_pending_essays(settings=healthy, grader=lambda text, prompt: fixed_grade(3))["suggested"]:
                break
            time.sleep(0.1)
        finish.set()
        worker.join(30)

    assert stale_report == {"claimed": 1, "suggested": 0, "needs_manual_grading": 0, "failed": 0, "gave_up": 0,
                            "lease_lost": 1, "already_graded": 0}
    assert _ai_scores(stalled, submission) == [(3.0, 2)]  # the new claimant's, once
    assert _job(stalled, submission).state is GradingJobState.suggested
    assert failed_renewals and all(len(tokens) == 1 for tokens in failed_renewals)  # it kept trying
    assert f"Dropped the AI suggestion of submission {submission}" in caplog.text


WORKER = """
import sys, time
from pathlib import Path
from grading_nlp.api import grade_pending_essays

def slow(text, prompt_id):
    Path(sys.argv[1]).write_text("grading")
    time.sleep(600)

grade_pending_essays(grader=slow)
"""


def test_a_hard_killed_workers_essay_is_graded_by_another_worker_within_a_lease(tmp_path):
    lease = 3.0
    settings = _settings(tmp_path, lease)
    submission = queue_essay(settings)
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEARNLOOP_ENV": "test", "LEARNLOOP_DATA_DIR": str(tmp_path / "var"),
           "LEARNLOOP_DATABASE_URL": settings.sqlalchemy_url, "LEARNLOOP_GRADING_LEASE_SECONDS": str(lease),
           "LEARNLOOP_NATS_URL": "", "LEARNLOOP_REDIS_URL": ""}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(started)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        assert started.exists(), f"the worker did not start grading (exit code {worker.poll()})"
        first_lease = _job(settings, submission).leased_until
        time.sleep(1.5 * lease)  # the worker renews while it grades: nobody else may take the essay
        assert grade_pending_essays(settings=settings, grader=lambda text, prompt: fixed_grade(0))["claimed"] == 0
        held_until = _job(settings, submission).leased_until
        assert held_until > first_lease
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    killed_at = time.monotonic()
    held_until = _job(settings, submission).leased_until

    deadline = killed_at + lease + 10
    report = {}
    while time.monotonic() < deadline:
        report = grade_pending_essays(settings=settings, grader=lambda text, prompt: fixed_grade(2))
        if report["suggested"]:
            break
        time.sleep(0.2)
    regraded_after = time.monotonic() - killed_at
    assert report.get("suggested") == 1, f"not graded again within {lease + 10:.0f} s of the kill"
    assert datetime.now(UTC) >= held_until  # the killed worker's last lease was honoured ...
    assert regraded_after <= lease + 1.5  # ... and it was the only wait (one lease, not 5 minutes)
    assert _ai_scores(settings, submission) == [(2.0, 2)]


def test_a_hung_grader_holds_neither_its_batch_nor_its_own_essay_past_the_cap(tmp_path, caplog):
    """Worker A claims two essays and its grader hangs on the first. Only the essay being graded is renewed, so an
    idle worker B grades the one A never started once its first lease runs out, and the hung one once A stops
    renewing it (``grading_max_seconds``) and its lease runs out; A's late result is dropped and A skips the essay
    B took instead of grading it again."""
    lease, cap = 1.5, 3.0
    settings = _settings(tmp_path, lease).model_copy(update={"grading_max_seconds": cap})
    hung, tail = queue_essay(settings), queue_essay(settings)
    grading, finish, calls = threading.Event(), threading.Event(), []

    def hangs(text: str, prompt_id: int):
        calls.append(time.monotonic())
        grading.set()
        finish.wait(60)
        return fixed_grade(3)

    with caplog.at_level(logging.WARNING):
        worker, report_a = _in_thread(lambda: grade_pending_essays(settings=settings, grader=hangs))
        try:
            assert grading.wait(30)
            started = time.monotonic()
            graded_at: dict = {}
            deadline = started + 20
            while time.monotonic() < deadline and len(graded_at) < 2:  # worker B polls
                grade_pending_essays(settings=settings, grader=lambda text, prompt: fixed_grade(1))
                for submission in (hung, tail):
                    if submission not in graded_at and _ai_scores(settings, submission):
                        graded_at[submission] = time.monotonic() - started
                time.sleep(0.1)
        finally:
            finish.set()
            worker.join(30)

    assert set(graded_at) == {hung, tail}, graded_at
    assert graded_at[tail] < cap  # B did not wait for A's cap: the waiting essay lapsed after its first lease
    assert graded_at[hung] >= cap  # renewed while A graded it, up to the cap, then taken over
    assert _ai_scores(settings, hung) == [(1.0, 2)] and _ai_scores(settings, tail) == [(1.0, 2)]  # B's, once
    assert len(calls) == 1  # A skipped the essay B had taken rather than grading it again
    assert report_a == {"claimed": 2, "suggested": 0, "needs_manual_grading": 0, "failed": 0, "gave_up": 0,
                        "lease_lost": 2, "already_graded": 0}
    assert "grading_max_seconds" in caplog.text and "skipping it" in caplog.text
