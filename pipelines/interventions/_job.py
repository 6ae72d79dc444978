"""The interventions job: score every active enrollment, decide (threshold + cooldown), explain, suggest, record.

**Why in-process and not through the model service.** The job scores every active enrollment at once (tens of
thousands): one batched Feast read through the FeatureService and one ONNX Runtime run over the batch take
seconds, where one HTTP call per enrollment would take minutes and would flood the service's prediction log —
the drift monitor's "current window" of live traffic — with batch rows. The explanations also need the model
itself (perturbation runs). It is the same model and the same inputs as the service: the registry's
``models:/risk@champion`` ONNX graph, the FeatureService named in its schema, the shared fill policy.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from learnloop.errors import NotFound
from learnloop.settings import Settings, get_settings
from pipelines.interventions import _drivers
from pipelines.interventions.data import RISK_MODEL, Decision, Driver, InterventionPolicy, RunSummary

Progress = Callable[[str, int, int], None]  # (step, done, total)
READ_CHUNK = 2_000


def decide(*, risk: float, prior, now: datetime, policy: InterventionPolicy) -> Decision:
    """Alert at risk ≥ threshold, unless the enrollment was alerted within the cooldown and its risk has not
    risen by the re-arm margin since (``prior``: ``platform_api.data.PriorAlert`` or None)."""
    if not risk >= policy.threshold:
        return Decision.below_threshold
    if prior is None or now - prior.created_at >= timedelta(days=policy.cooldown_days):
        return Decision.raise_alert
    if risk >= prior.risk_score + policy.rearm_margin - 1e-12:
        return Decision.raise_alert
    return Decision.suppressed_by_cooldown


def suggest_actions(*, drivers: list[Driver], next_due: dict | None, remedial: list[dict] | None,
                    policy: InterventionPolicy) -> list[dict]:
    """What staff could do: always message the learner (opening with the top reason); recommend remedial
    content when the course has some; extend the next deadline when missed work or inactivity drives the risk."""
    from platform_api.data import AlertAction

    # The top reason without its cohort comparison reads as a conversation opener.
    reason = drivers[0].text.split(" (")[0] if drivers else "their recent progress"
    actions = [{"kind": AlertAction.message_learner.value, "label": f"Message the learner: check in about {reason}",
                "details": {"topic": drivers[0].key if drivers else None}}]
    if remedial:
        titles = ", ".join(item["title"] for item in remedial[:policy.remedial_items])
        actions.append({"kind": AlertAction.recommend_content.value,
                        "label": f"Recommend remedial content: {titles}",
                        "details": {"items": remedial[:policy.remedial_items]}})
    keys = {d.key for d in drivers}
    if next_due and keys & {"missed_assessments", "inactivity", "low_clicks"}:
        due = datetime.fromisoformat(next_due["due_at"])
        new_due = due + timedelta(days=policy.deadline_extension_days)
        actions.append({"kind": AlertAction.extend_deadline.value,
                        "label": f"Extend the deadline of “{next_due['title']}” from {due:%d %b} to {new_due:%d %b}",
                        "details": {**next_due, "extended_due_at": new_due.isoformat(),
                                    "extension_days": policy.deadline_extension_days}})
    return actions


class _Model:
    """The champion ONNX graph scoring a frame of features (columns = FeatureService order)."""

    def __init__(self, settings: Settings) -> None:
        from models.api import OnnxClassifier, load_champion_onnx

        try:
            champion = load_champion_onnx(RISK_MODEL, settings=settings)
        except NotFound as exc:
            raise NotFound(f"No champion '{RISK_MODEL}' model to score with ({exc.message}); train and promote one "
                           "with `learnloop train risk` and `learnloop promote risk`") from exc
        self.version = str(champion.version)
        self.schema = champion.schema
        self.service = champion.schema.feature_service or "student_risk_v1"
        self._classifier = OnnxClassifier(champion.onnx_bytes, champion.schema)

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.zeros(0)
        return self._classifier.predict_proba(frame)


def _read_features(service: str, keys: list[str], settings: Settings, progress: Progress | None) -> np.ndarray:
    from features.api import feature_names, get_store
    from pipelines.api import online_feature_matrix

    store = get_store(settings)
    parts = []
    for start in range(0, len(keys), READ_CHUNK):
        chunk = keys[start:start + READ_CHUNK]
        parts.append(online_feature_matrix(service=service, store=store,
                                           entity_rows=[{"student_course": key} for key in chunk]))
        if progress:
            progress("read features", min(start + READ_CHUNK, len(keys)), len(keys))
    return np.vstack(parts) if parts else np.zeros((0, len(feature_names(service))))


def _registration_known(matrix: np.ndarray, service: str) -> np.ndarray:
    """Rows with any value in a registration-level view (what the model service also requires to score)."""
    from features.api import feature_names, fill_matrix, view_features, view_join_key, view_names

    names = feature_names(service)
    # Flags are filled (0 for "absent"), so they say nothing about whether a row exists: leave them out.
    filled_anyway = ~np.isnan(fill_matrix(np.full((1, len(names)), np.nan), service)[0])
    registration = {f for view in view_names() if view_join_key(view) == "student_course" for f in view_features(view)}
    columns = [i for i, name in enumerate(names) if name in registration and not filled_anyway[i]]
    if not columns:
        return np.ones(len(matrix), dtype=bool)
    return ~np.all(np.isnan(matrix[:, columns]), axis=1)


def run(*, settings: Settings | None = None, policy: InterventionPolicy | None = None,
        course_id: uuid.UUID | None = None, include_completed: bool = False, now: datetime | None = None,
        progress: Progress | None = None, recommend: Callable | None | bool = True) -> RunSummary:
    from platform_api import api as platform
    from platform_api.data import NewAlert

    settings = settings or get_settings()
    policy = policy or InterventionPolicy()
    now = now or datetime.now(UTC)
    summary = RunSummary(threshold=policy.threshold, cooldown_days=policy.cooldown_days,
                         rearm_margin=policy.rearm_margin)
    clock = time.perf_counter()
    with platform.open_session(settings) as session:
        targets = platform.active_enrollments(session=session, course_id=course_id,
                                              include_completed=include_completed)
    summary.active_enrollments = len(targets)
    linked = [t for t in targets if t.id_student is not None and t.presentation is not None]
    summary.not_linked = len(targets) - len(linked)
    summary.seconds["enrollments"] = round(time.perf_counter() - clock, 3)
    if not linked:
        return summary

    clock = time.perf_counter()
    model = _Model(settings)
    summary.model_version, summary.feature_service = model.version, model.service
    summary.seconds["load_model"] = round(time.perf_counter() - clock, 3)

    clock = time.perf_counter()
    from features.api import feature_names

    names = feature_names(model.service)
    matrix = _read_features(model.service, [f"{t.id_student}:{t.presentation}" for t in linked], settings, progress)
    known = _registration_known(matrix, model.service)
    summary.no_features = int((~known).sum())
    scored = [t for t, ok in zip(linked, known, strict=True) if ok]
    frame = pd.DataFrame(matrix[known], columns=names)
    summary.seconds["read_features"] = round(time.perf_counter() - clock, 3)

    clock = time.perf_counter()
    risk = model(frame)
    summary.scored = len(scored)
    summary.courses = len({t.course_id for t in scored})
    if len(risk):
        summary.risk_quantiles = {q: round(float(np.quantile(risk, float(q))), 4) for q in ("0.5", "0.9", "0.99")}
    if progress:
        progress("score", len(scored), len(scored))
    summary.seconds["score"] = round(time.perf_counter() - clock, 3)

    clock = time.perf_counter()
    at_risk = np.flatnonzero(risk >= policy.threshold)
    with platform.open_session(settings, migrate_first=False) as session:
        priors = platform.latest_alerts(session=session, enrollment_ids=[scored[i].enrollment_id for i in at_risk])
    decisions = Counter()
    raise_rows = []
    for i in range(len(scored)):
        decision = decide(risk=float(risk[i]), prior=priors.get(scored[i].enrollment_id), now=now, policy=policy)
        decisions[decision] += 1
        if decision is Decision.raise_alert:
            raise_rows.append(i)
    summary.below_threshold = decisions[Decision.below_threshold]
    summary.suppressed_by_cooldown = decisions[Decision.suppressed_by_cooldown]
    summary.seconds["decide"] = round(time.perf_counter() - clock, 3)
    if not raise_rows:
        return summary

    clock = time.perf_counter()
    rows = np.asarray(raise_rows)
    courses = [t.presentation for t in scored]
    reference = _drivers.cohort_reference(frame, courses, min_cohort=policy.min_cohort, select=rows)
    drivers = _drivers.explain(model, frame.iloc[rows], reference, risk=risk[rows], max_drivers=policy.max_drivers,
                               min_contribution=policy.min_contribution)
    if progress:
        progress("explain", len(rows), len(rows))
    summary.seconds["explain"] = round(time.perf_counter() - clock, 3)

    clock = time.perf_counter()
    alerts = []
    top_drivers: Counter = Counter()
    with platform.open_session(settings, migrate_first=False) as session:
        course_ids = {scored[i].course_id for i in rows}
        next_due = platform.next_due_assessments(session=session, course_ids=course_ids, now=now)
        with_content = platform.courses_with_content(session=session, course_ids=course_ids)
        backend = _recommender(recommend) if with_content else None
        for done, (i, reasons) in enumerate(zip(rows, drivers, strict=True)):
            target = scored[i]
            remedial = None
            if target.course_id in with_content:
                remedial = platform.remedial_content(session=session, user_id=target.user_id,
                                                     course_id=target.course_id, backend=backend,
                                                     limit=policy.remedial_items)
            actions = suggest_actions(drivers=reasons, next_due=next_due.get(target.course_id), remedial=remedial,
                                      policy=policy)
            alerts.append(NewAlert(enrollment_id=target.enrollment_id, risk_score=float(risk[i]),
                                   threshold=policy.threshold, model_name=RISK_MODEL, model_version=model.version,
                                   drivers=[d.to_dict() for d in reasons], actions=actions))
            top_drivers.update(d.key for d in reasons[:1])
            for action in actions:
                summary.actions[action["kind"]] = summary.actions.get(action["kind"], 0) + 1
            if progress and (done % 200 == 0 or done == len(rows) - 1):
                progress("suggest actions", done + 1, len(rows))
        platform.record_alerts(session=session, alerts=alerts, now=now)
    summary.top_drivers = dict(top_drivers.most_common())
    summary.alerts_raised = len(alerts)
    summary.seconds["record"] = round(time.perf_counter() - clock, 3)
    return summary


def _recommender(recommend: Callable | None | bool) -> Callable | None:
    """``True``: the recommender's ``recommend`` (imported only when a course has content to recommend)."""
    if recommend is True:
        from recommender.api import recommend as served

        return served
    return recommend or None
