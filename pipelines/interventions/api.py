"""Public surface of the interventions job (``learnloop interventions …``).

``run_interventions`` scores every active enrollment on the platform with the champion risk model and raises
explained alerts with suggested actions; staff act on them in the platform (``GET /api/v1/courses/{id}/alerts``,
the page ``/staff/courses/{id}/alerts``); ``export_outcome_labels`` hands their verdicts to the next training run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnloop.settings import Settings, get_settings
from pipelines.interventions import _drivers, _job
from pipelines.interventions.data import Decision, Driver, InterventionPolicy, RunSummary

__all__ = ["Decision", "Driver", "InterventionPolicy", "RunSummary", "cohort_reference", "decide",
           "explain_risk", "export_outcome_labels", "run_interventions", "suggest_actions"]


def run_interventions(*, settings: Settings | None = None, policy: InterventionPolicy | None = None,
                      course_id: uuid.UUID | None = None, include_completed: bool = False,
                      now: datetime | None = None, progress: Callable[[str, int, int], None] | None = None,
                      recommend: Callable | bool | None = True) -> RunSummary:
    """Score the platform's active enrollments (``course_id``: one course) with ``models:/risk@champion`` and
    record an alert for each that crosses ``policy.threshold`` outside its cooldown, with its top drivers in words
    and suggested actions. ``include_completed`` also scores completed enrollments (replaying a finished
    presentation, e.g. imported OULAD history). ``recommend``: True = ``recommender.api.recommend`` for remedial
    content (the platform's popularity list when it fails), a callable of the same signature, or None.
    ``progress(step, done, total)`` is called as it goes. Returns the run summary."""
    return _job.run(settings=settings, policy=policy, course_id=course_id, include_completed=include_completed,
                    now=now, progress=progress, recommend=recommend)


def decide(*, risk: float, prior, now: datetime, policy: InterventionPolicy) -> Decision:
    """Threshold + cooldown for one enrollment (``prior``: its latest ``platform_api.data.PriorAlert`` or None)."""
    return _job.decide(risk=risk, prior=prior, now=now, policy=policy)


def suggest_actions(*, drivers: Sequence[Driver], next_due: Mapping[str, Any] | None,
                    remedial: Sequence[Mapping[str, Any]] | None,
                    policy: InterventionPolicy | None = None) -> list[dict[str, Any]]:
    """The actions an alert suggests: message the learner, recommend remedial content, extend the next deadline."""
    return _job.suggest_actions(drivers=list(drivers), next_due=dict(next_due) if next_due else None,
                                remedial=[dict(r) for r in remedial] if remedial else None,
                                policy=policy or InterventionPolicy())


def cohort_reference(frame: pd.DataFrame, courses: Sequence[str], *, min_cohort: int = 10,
                     select: np.ndarray | None = None) -> pd.DataFrame:
    """Per row, the median of each feature over the row's course (over all rows for courses under ``min_cohort``)."""
    return _drivers.cohort_reference(frame, courses, min_cohort=min_cohort, select=select)


def explain_risk(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, reference: pd.DataFrame, *,
                 max_drivers: int = 3, min_contribution: float = 0.01) -> list[list[Driver]]:
    """Top drivers per row in words: how much the risk falls when a feature group is set to the cohort's median
    (``predict`` is the model: frame → P(at risk)); background attributes are never named as drivers."""
    return _drivers.explain(predict, rows, reference, max_drivers=max_drivers, min_contribution=min_contribution)


def export_outcome_labels(*, settings: Settings | None = None, out: Path | None = None,
                          since: datetime | None = None) -> pd.DataFrame:
    """Staff verdicts on resolved alerts as a label frame (``id_student``, ``presentation``, ``student_course``,
    ``risk_score``, ``model_version``, ``outcome``, ``action``, ``raised_at``, ``resolved_at``,
    ``alert_was_useful``) for the next training run; written to ``out`` (parquet, or CSV for ``.csv``)."""
    from platform_api import api as platform

    settings = settings or get_settings()
    with platform.open_session(settings) as session:
        labels = platform.alert_outcome_labels(session=session, since=since)
    frame = pd.DataFrame([{
        "alert_id": str(label.alert_id), "id_student": label.id_student, "presentation": label.presentation,
        "student_course": f"{label.id_student}:{label.presentation}" if label.id_student is not None else None,
        "risk_score": label.risk_score, "model_version": label.model_version, "outcome": label.outcome.value,
        "action": label.action, "raised_at": label.raised_at, "resolved_at": label.resolved_at,
        "alert_was_useful": label.outcome.value != "not_useful"} for label in labels],
        columns=["alert_id", "id_student", "presentation", "student_course", "risk_score", "model_version",
                 "outcome", "action", "raised_at", "resolved_at", "alert_was_useful"])
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    return frame
