"""The AI grading worker: claims queued essay submissions from the platform, grades each essay with the prompt's
model and records the suggestion, "needs manual grading" with the reason, or the failure (retried with backoff).

The platform database is the queue (``grading_jobs``), so nothing is lost when a worker stops: an unfinished
claim expires and is taken again; after ``max_attempts`` failed tries staff grade the essay by hand.

Claims are short (``Settings.grading_lease_seconds``, 60 s). A :class:`LeaseKeeper` thread renews, every third
of that, the claim of the one essay the worker is grading, for at most ``Settings.grading_max_seconds`` (600 s):
a killed worker's essays are graded by another worker about a lease later, a slow one keeps the essay it works
on, and a hung one loses it one lease after that cap. The rest of a claimed batch is not renewed while it waits:
an idle worker takes over what this one has not started once its lease runs out, and this worker refreshes each
claim (a conditional UPDATE on its token) just before starting it, skipping it when another worker has taken it.
A result whose claim was taken over meanwhile is dropped by the platform (``lease_lost`` in the report). Staff
may grade an essay by hand while the worker grades it: the staff grade ends the job, and the worker's result for
it (suggestion, "needs manual grading" or failure) is dropped, never stored nor retried (``already_graded``).

Leases are compared with each worker's clock (and the API's): keep the clocks of every worker host in step (NTP).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
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
    lease_lost: int = 0  # results dropped: the lease ran out and another worker took the job over
    already_graded: int = 0  # results dropped: staff graded the submission by hand meanwhile (the job is ended)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class LeaseKeeper:
    """Renews, from its own thread and database session, the lease of the job this worker is grading (one at a
    time, see :meth:`hold`): every ``lease_seconds / 3``, so two missed renewals still leave a third of the lease,
    and for at most ``max_seconds`` per job, so a hung grader does not hold its essay forever. Use as a context
    manager."""

    def __init__(self, settings: Settings, lease_seconds: float, max_seconds: float | None = None):
        self._settings = settings
        self._lease_seconds = lease_seconds
        self._max_seconds = settings.grading_max_seconds if max_seconds is None else max_seconds
        self._lock = threading.Lock()
        self._held: uuid.UUID | None = None
        self._renew_until = 0.0  # time.monotonic() past which the held job is no longer renewed
        self._lost: set[uuid.UUID] = set()
        self._expired: set[uuid.UUID] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grading-lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def hold(self, claim_token: uuid.UUID) -> None:
        """The worker starts grading this job: renew its lease from now on, for at most ``max_seconds``."""
        with self._lock:
            self._held = claim_token
            self._renew_until = time.monotonic() + self._max_seconds

    def release(self, claim_token: uuid.UUID) -> None:
        """The job is finished (or dropped): stop renewing it."""
        with self._lock:
            if self._held == claim_token:
                self._held = None
            self._lost.discard(claim_token)
            self._expired.discard(claim_token)

    def lost(self, claim_token: uuid.UUID) -> bool:
        """Whether a renewal found the job taken over (grading it would be wasted work)."""
        with self._lock:
            return claim_token in self._lost

    def _run(self) -> None:
        from platform_api import api as platform

        with platform.open_session(self._settings, migrate_first=False) as session:
            while not self._stop.wait(self._lease_seconds / 3):
                with self._lock:
                    token = self._held
                    if token is None or token in self._lost or token in self._expired:
                        continue
                    if time.monotonic() > self._renew_until:
                        self._expired.add(token)
                        log.warning("grading claim %s has been graded for more than %.0f s "
                                    "(grading_max_seconds): no longer renewing it, so another worker takes the "
                                    "essay over when its lease runs out and this attempt's result is dropped",
                                    token, self._max_seconds)
                        continue
                try:
                    still = platform.renew_grading_leases(session=session, claim_tokens=[token],
                                                          lease_seconds=self._lease_seconds)
                except Exception:  # noqa: BLE001 - a missed renewal is retried; the lease still has 2/3 to run
                    session.rollback()
                    log.warning("renewing grading lease %s failed; retrying in %.1f s", token,
                                self._lease_seconds / 3, exc_info=True)
                    continue
                with self._lock:
                    # A token released meanwhile was finished by this worker, not lost.
                    gone = token not in still and self._held == token
                    if gone:
                        self._lost.add(token)
                if gone:
                    log.warning("grading claim %s was taken over by another worker (its lease ran out) or staff "
                                "graded the essay meanwhile; its result will be dropped", token)


def _default_grader(settings: Settings) -> Grader:
    from grading_nlp.api import grade_essay

    return lambda text, prompt_id: grade_essay(text, prompt_id, settings=settings)


def grade_pending(*, settings: Settings | None = None, grader: Grader | None = None, limit: int = 20,
                  now: datetime | None = None, max_attempts: int | None = None,
                  backoff_seconds: float | None = None, migrate_first: bool = True) -> WorkReport:
    """One pass: claim up to ``limit`` due jobs and finish each of them in turn, renewing the lease of the one
    being graded (for at most ``settings.grading_max_seconds``); a job another worker took over while it waited
    is skipped (``lease_lost``). ``now`` fixes the clock of claims and retries, for tests; renewals use the real
    clock."""
    from platform_api import api as platform

    settings = settings or get_settings()
    grader = grader or _default_grader(settings)
    retry = {k: v for k, v in (("max_attempts", max_attempts), ("backoff_seconds", backoff_seconds)) if v is not None}
    report = WorkReport()
    lease = settings.grading_lease_seconds
    with platform.open_session(settings, migrate_first=migrate_first) as session:
        tasks = platform.claim_grading_tasks(session=session, limit=limit, now=now, lease_seconds=lease)
        report.claimed = len(tasks)
        if not tasks:
            return report
        with LeaseKeeper(settings, lease) as keeper:
            for task in tasks:
                # Only the job being graded is renewed: the ones waiting here lapse after their first lease and
                # an idle worker may take them. Refresh the claim before starting: the UPDATE matches only while
                # the job still carries this claim's token (and extends its lease), else another worker has it.
                if _still_ours(session, task, lease):
                    keeper.hold(task.claim_token)
                    _finish(session, task, grader, report, now=now, retry=retry)
                    keeper.release(task.claim_token)
                else:
                    _count_dropped(session, task, report)  # grading it here would be wasted
    return report


def _still_ours(session, task, lease_seconds: float) -> bool:
    from platform_api import api as platform

    try:
        held = platform.renew_grading_leases(session=session, claim_tokens=[task.claim_token],
                                             lease_seconds=lease_seconds)
    except Exception:  # noqa: BLE001 - unsure: grade it; the platform fences the result if the claim was lost
        session.rollback()
        log.warning("refreshing grading claim %s failed; grading it anyway", task.claim_token, exc_info=True)
        return True
    if task.claim_token not in held:
        log.warning("grading claim %s of submission %s was taken over by another worker, or staff graded the "
                    "essay, before this one started it (it waited in this worker's batch); skipping it",
                    task.claim_token, task.submission_id)
        return False
    return True


def _count_dropped(session, task, report: WorkReport) -> None:
    """The platform dropped this claim's result (or the claim was gone before grading): count why."""
    from platform_api import api as platform

    try:
        state = platform.grading_job_state(session=session, submission_id=task.submission_id)
    except Exception:  # noqa: BLE001 - only the count is at stake
        session.rollback()
        state = None
    if state == "staff_graded":
        log.info("submission %s was graded by staff while the AI graded it; the AI result is dropped",
                 task.submission_id)
        report.already_graded += 1
    else:
        report.lease_lost += 1


def _finish(session, task, grader: Grader, report: WorkReport, *, now: datetime | None,
            retry: dict[str, float]) -> None:
    """Grade every essay of ``task`` and record the suggestion, "needs manual grading" or the failure (each
    dropped by the platform when the claim was taken over or staff graded the submission meanwhile)."""
    from learnloop.datasets import PROMPT_SCORE_RANGES
    from platform_api import api as platform

    claim = {"submission_id": task.submission_id, "claim_token": task.claim_token}
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
            recorded = platform.record_manual_grading(
                session=session, reasons=manual or ["This submission has no essay answer to grade."], **claim)
            report.needs_manual_grading += recorded
        else:
            recorded = platform.record_ai_suggestion(session=session, essays=suggestions, **claim) is not None
            report.suggested += recorded
        if not recorded:
            _count_dropped(session, task, report)
    except Exception as exc:  # noqa: BLE001 - any failure of one job is recorded and retried, never lost
        session.rollback()
        log.warning("AI grading of submission %s failed (attempt %d): %s", task.submission_id, task.attempt,
                    exc, exc_info=True)
        state = platform.record_grading_failure(session=session, error=f"{type(exc).__name__}: {exc}", now=now,
                                                **claim, **retry)
        report.failed += state is not None
        report.gave_up += state == "needs_manual_grading"
        if state is None:
            _count_dropped(session, task, report)


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
