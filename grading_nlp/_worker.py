"""The AI grading worker: claims queued essay submissions from the platform, grades each essay with the prompt's
model and records the suggestion, "needs manual grading" with the reason, or the failure (retried with backoff).

The platform database is the queue (``grading_jobs``), so nothing is lost when a worker stops: an unfinished
claim expires and is taken again; after ``max_attempts`` failed tries staff grade the essay by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from grading_nlp.data import AiGrade, GradeStatus
from learnloop.settings import Settings, get_settings

log = logging.getLogger(__name__)

Grader = Callable[[str, int], AiGrade]


@dataclass
class WorkReport:
    """What one pass of the worker did (``learnloop grading work --json`` prints it)."""

    claimed: int = 0
    suggested: int = 0
    needs_manual_grading: int = 0
    failed: int = 0
    gave_up: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _default_grader(settings: Settings) -> Grader:
    from grading_nlp.api import grade_essay

    return lambda text, prompt_id: grade_essay(text, prompt_id, settings=settings)


def grade_pending(*, settings: Settings | None = None, grader: Grader | None = None, limit: int = 20,
                  now: datetime | None = None, max_attempts: int | None = None,
                  backoff_seconds: float | None = None, migrate_first: bool = True) -> WorkReport:
    """One pass: claim up to ``limit`` due jobs and finish each of them."""
    from learnloop.datasets import PROMPT_SCORE_RANGES
    from platform_api import api as platform

    settings = settings or get_settings()
    grader = grader or _default_grader(settings)
    retry = {k: v for k, v in (("max_attempts", max_attempts), ("backoff_seconds", backoff_seconds)) if v is not None}
    report = WorkReport()
    with platform.open_session(settings, migrate_first=migrate_first) as session:
        tasks = platform.claim_grading_tasks(session=session, limit=limit, now=now)
        report.claimed = len(tasks)
        for task in tasks:
            try:
                suggestions, manual = [], []
                for essay in task.essays:
                    if essay.prompt_id is None:
                        manual.append(f"The question '{essay.question_prompt[:80]}' is linked to no AI grading model "
                                      "(set its rubric's essay_set or the assessment's metadata.essay_prompt); grade "
                                      "it by hand.")
                        continue
                    grade = grader(essay.essay, essay.prompt_id)
                    if grade.status is GradeStatus.needs_manual_grading or grade.score is None:
                        manual += grade.reasons or ["The AI could not grade this essay; grade it by hand."]
                        continue
                    score_range = grade.score_range or PROMPT_SCORE_RANGES.get(essay.prompt_id) or (0, grade.score)
                    suggestions.append(platform.EssaySuggestion(
                        question_id=essay.question_id, prompt_id=essay.prompt_id, score=int(grade.score),
                        interval=tuple(grade.interval) if grade.interval else None, confidence=grade.confidence,
                        needs_review=grade.needs_review, reasons=list(grade.reasons),
                        model_version=grade.model_version, score_range=tuple(score_range)))
                if manual or not suggestions:
                    platform.record_manual_grading(session=session, submission_id=task.submission_id,
                                                   reasons=manual or ["This submission has no essay answer to grade."])
                    report.needs_manual_grading += 1
                else:
                    platform.record_ai_suggestion(session=session, submission_id=task.submission_id,
                                                  essays=suggestions)
                    report.suggested += 1
            except Exception as exc:  # noqa: BLE001 - any failure of one job is recorded and retried, never lost
                session.rollback()
                log.warning("AI grading of submission %s failed (attempt %d): %s", task.submission_id, task.attempt,
                            exc, exc_info=True)
                state = platform.record_grading_failure(session=session, submission_id=task.submission_id,
                                                        error=f"{type(exc).__name__}: {exc}", now=now, **retry)
                report.failed += 1
                report.gave_up += state == "needs_manual_grading"
    return report


def run_worker(*, settings: Settings | None = None, stop: threading.Event | None = None, poll_seconds: float = 2.0,
               grader: Grader | None = None, once: bool = False) -> WorkReport:
    """Grade until ``stop`` is set (or one pass with ``once``), sleeping ``poll_seconds`` when idle. Returns the
    totals. A failing pass (database down) is logged and retried on the next poll."""
    settings = settings or get_settings()
    stop = stop or threading.Event()
    total = WorkReport()
    first = True
    while not stop.is_set():
        try:
            report = grade_pending(settings=settings, grader=grader, migrate_first=first)
            first = False
        except Exception:  # noqa: BLE001 - keep the background worker alive; the queue is in the database
            log.exception("grading worker pass failed; retrying in %.0f s", poll_seconds)
            report = WorkReport()
        for key, value in report.as_dict().items():
            setattr(total, key, getattr(total, key) + value)
        if once:
            break
        if report.claimed == 0:
            stop.wait(poll_seconds)
    return total


def start_worker_thread(*, settings: Settings | None = None, poll_seconds: float = 2.0,
                        grader: Grader | None = None) -> tuple[threading.Thread, threading.Event]:
    """Run :func:`run_worker` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_worker, name="grading-worker", daemon=True,
                              kwargs={"settings": settings, "stop": stop, "poll_seconds": poll_seconds,
                                      "grader": grader})
    thread.start()
    return thread, stop
