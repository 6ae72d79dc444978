"""Train the learned ranker, export it to ONNX (parity asserted) and register it as ``recommender`` in MLflow.

Data: the OULAD presentations with clicks plus the platform's own courses, rebuilt from activity events (content
opens on ``lms.analytics.events``; see :mod:`platform_events`). Held-out metric: the latest OULAD presentation
scored by a model fitted on the earlier ones only (NDCG@10 at the evaluation's cutoffs, with popularity within
week on the same lists for comparison); the registered model is then refitted on everything.

Imported only by the CLI and tests: ``recommender.api`` (which serving imports) must stay training-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from recommender._recommend import learned, rankers
from recommender._recommend.clicks import CourseClicks
from recommender._recommend.oulad_eval import cutoffs_of, ranking_metrics

PARITY_ROWS = 5000


def _ece(probability: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(probability[inside].mean() - label[inside].mean())
    return float(total / max(len(label), 1))


def gate_policy():
    """Promotion gate of the ranker: held-out NDCG@10 (no loss beyond 0.005), better than popularity within week
    (the cold-start rule every learner gets without a champion) on the same lists, per-course NDCG floor, ONNX
    parity.

    Calibration is logged (``ece``) but not gated: the ranker is fitted on subsampled negatives (10 %, then
    thinned to at most 150k rows), so its scores are only used to order a learner's items and are not
    probabilities of the served population; AAA 2014J showed ECE 0.15 with a better NDCG than the baseline.
    """
    from training.api import GatePolicy

    return GatePolicy(
        metric="ndcg_at_10", tolerance=0.005, calibration_metric="ece", max_calibration_error=1.0,
        subgroup_prefix="ndcg_at_10.course.", max_subgroup_drop=0.05, min_subgroup_value=0.3,
        baseline_metric="ndcg_at_10_popularity_recent",
    )


def held_out_report(model, course: CourseClicks) -> dict[str, float]:
    """NDCG@10 of the model and of popularity within week on the course's evaluation lists."""
    sums = {"ranker": 0.0, "popularity_recent": 0.0}
    n = 0
    for day in cutoffs_of(course):
        seen = course.seen(day)
        truth = course.first_clicked_between(day, day + rankers.HORIZON_DAYS) & ~seen
        rows = truth.any(1)
        if not rows.any():
            continue
        for name, scores in (
            ("ranker", learned.score_native(model, course, day)),
            ("popularity_recent", rankers.popularity_recent(course, day)),
        ):
            sums[name] += float(ranking_metrics(scores[rows], seen[rows], truth[rows])[0].sum())
        n += int(rows.sum())
    return {name: total / max(n, 1) for name, total in sums.items()} | {"lists": n}


def train_ranker(
    courses: Sequence[CourseClicks],
    *,
    platform_courses: Sequence[CourseClicks] = (),
    feedback: dict | None = None,
    register: bool = True,
    promote: bool = True,
    settings=None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Fit, evaluate, export and (with ``register``) log a new ``recommender`` version; returns a report."""
    import pandas as pd

    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs

    say = progress or (lambda _message: None)
    ordered = learned.chronological(courses)
    if len(ordered) < 2:
        raise ValueError("training the ranker needs at least two presentations (one is held out)")
    *earlier, held_out = ordered
    cache = learned.RowCache()
    say(f"fitting on {', '.join(c.course_id for c in earlier)} to score {held_out.course_id}")
    report = held_out_report(learned.fit(*cache.stack([(c, d) for c in earlier for d in learned.training_cutoffs(c)])),
                             held_out)
    held_x, held_y, _ = cache.stack([(held_out, d) for d in learned.training_cutoffs(held_out)])

    everything = [*ordered, *platform_courses]
    say(f"refitting on {len(everything)} courses ({len(platform_courses)} from platform events)")
    plan = [(c, d) for c in everything for d in learned.training_cutoffs(c)]
    x_all, y_all, w_all = cache.stack(plan)
    model = learned.fit(x_all, y_all, w_all)
    frame = pd.DataFrame(held_x.astype(np.float32), columns=list(rankers.FEATURES))
    schema = ModelSchema(
        inputs=infer_inputs(frame, rankers.FEATURES),
        extra={"label": "P(first open of the item within 7 days)", "horizon_days": rankers.HORIZON_DAYS},
    )
    rng = np.random.default_rng(0)
    parity = frame.iloc[rng.choice(len(frame), size=min(PARITY_ROWS, len(frame)), replace=False)]
    say("exporting to ONNX (parity check)")
    export = export_sklearn_classifier(model, parity, schema)
    probability = model.predict_proba(held_x.astype(np.float32))[:, 1]
    metrics = {
        "ndcg_at_10": round(report["ranker"], 4),
        "ndcg_at_10_popularity_recent": round(report["popularity_recent"], 4),
        f"ndcg_at_10.course.{held_out.course_id}": round(report["ranker"], 4),
        "held_out_lists": float(report["lists"]),
        "ece": round(_ece(probability, held_y.astype(float)), 4),
        "onnx_parity_max_abs_diff": export.parity_max_abs_diff,
        "train_rows": float(len(y_all)),
        "platform_courses": float(len(platform_courses)),
    }
    for arm, counts in (feedback or {}).get("by_variant", {}).items():
        for outcome, value in counts.items():
            metrics[f"feedback.{arm}.{outcome}"] = float(value)
    result = {"metrics": metrics, "held_out": held_out.course_id, "version": None, "promotion": None}
    if not register:
        return result
    from training.api import data_fingerprint, register_onnx_model
    from training.api import promote as promote_model

    policy = gate_policy()
    say("registering in MLflow")
    version = register_onnx_model(
        name=learned.MODEL_NAME, export=export, metrics=metrics, params=dict(learned.PARAMS),
        preprocessing={"features": list(rankers.FEATURES), "negative_share": learned.NEGATIVE_SHARE,
                       "train_step_days": learned.TRAIN_STEP_DAYS},
        train_fingerprint=data_fingerprint(pd.DataFrame(x_all[:, :4]).assign(y=y_all)),
        eval_fingerprint=data_fingerprint(frame.iloc[:, :4].assign(y=held_y)),
        json_artifacts={"held_out.json": report, "feedback.json": feedback or {}},
        description=f"next-item ranker; held-out {held_out.course_id} NDCG@10 {metrics['ndcg_at_10']} "
        f"vs popularity within week {metrics['ndcg_at_10_popularity_recent']}",
        gate_policy=policy, native_model=export.estimator, native_input_example=parity.head(5),
        reference_sample=learned.reference_sample(cache, plan), settings=settings,
    )
    result["version"] = str(version.version)
    if promote:
        decision = promote_model(learned.MODEL_NAME, settings=settings)
        result["promotion"] = decision.outcome.value if hasattr(decision.outcome, "value") else str(decision.outcome)
        result["gate_failures"] = [f"{check.name}: {check.detail}" for check in decision.checks if not check.passed]
    return result
