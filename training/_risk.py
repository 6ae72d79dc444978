"""The at-risk model: P(Withdrawn or Fail) for a registration as of week w, from FeatureService student_risk_v1.

Protocol (issue 6): train on the 2013B, 2013J and 2014B presentations, test on every 2014J presentation, one
row per (registration, week) with features as of day 7·w. "Active" rows are students still registered at the
cutoff — the ones an instructor can still help, so the gate and the headline numbers use them.

Learner: HistGradientBoosting (native NaN handling: absent click history stays absent) with monotonic
constraints on behavioural features — more missed assessments / less activity never lowers the risk — and Platt
scaling fitted on active students' predictions cross-fitted by presentation (each training presentation scored by a model that
never saw it), so calibration reflects the shift to an unseen presentation. Everything fitted is one sklearn
pipeline that ``models.api`` exports to a single ONNX graph with asserted parity.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput, Unavailable
from learnloop.settings import Settings, get_settings
from training.data import Learner, RiskRecipe

RISK_MODEL_NAME = "risk"
RISK_SERVICE = "student_risk_v2"  # the default (RiskRecipe.feature_service); v1 still trains and serves
TRAIN_PRESENTATIONS = ("2013B", "2013J", "2014B")
TEST_PRESENTATIONS = ("2014J",)
CLICK_TRAIN_COURSES = ("AAA-2013J", "BBB-2013B")  # the only presentations with complete click logs ...
CLICK_TEST_COURSES = ("AAA-2014J",)  # ... besides this one (data README)
WEEKS = ("5", "10", "15", "end")
# Capacity candidates (max_iter, min_samples_leaf, max_leaf_nodes), chosen per fit by leave-one-presentation-out
# on the training presentations: the click model learns from two courses and wants a far smaller model than the
# main one (AAA 2014J active AUC 0.69 → 0.71 at week 5 with the smaller model).
CAPACITY_GRID = ((300, 80, 31), (150, 150, 15), (80, 200, 15))
SUBGROUP_COLUMNS = ("gender", "age_band", "disability", "imd_band")
MIN_SUBGROUP_ROWS = 200
MIN_SUBGROUP_CLASS_ROWS = 30
# Columns that identify or leak the outcome: never model inputs (the invariance/leakage tests rely on it).
NON_FEATURE_COLUMNS = frozenset({
    "student_course", "id_student", "code_module", "code_presentation", "week", "cutoff_day", "active",
    "has_clicks", "label", "final_result", "date_unregistration", *SUBGROUP_COLUMNS,
})

# Directional domain knowledge enforced as monotonic constraints (+1: risk never decreases as it grows).
_INCREASING = ("n_missed", "is_unregistered", "days_since_last_activity")
_DECREASING_PATTERNS = (r"^clicks_.*", r"^active_days_.*", r"^current_streak$", r"^longest_streak$",
                        r"^submitted_share$", r"^submitted_vs_cohort$")


@dataclass
class FittedRisk:
    estimator: Any
    inputs: tuple
    slope: float
    intercept: float
    monotonic: dict[str, int] = field(default_factory=dict)
    recipe: RiskRecipe | None = None  # as fitted: the chosen capacity when the recipe had a grid
    capacity_scores: dict[str, float] = field(default_factory=dict)  # candidate → mean held-out active AUC


def service_version(service: str) -> str:
    """``student_risk_v2`` → ``"2"`` (the FeatureService version recorded with the model)."""
    match = re.search(r"_v(\d+)$", service)
    return match.group(1) if match else "1"


def risk_features(frame: pd.DataFrame | None = None, service: str = RISK_SERVICE) -> list[str]:
    """The model inputs: FeatureService ``service`` in model-input order (never ids or outcomes)."""
    from features.api import feature_names

    names = list(feature_names(service))
    leaking = sorted(set(names) & NON_FEATURE_COLUMNS)
    if leaking:
        raise InvalidInput(f"{service} exposes identifier/outcome columns {leaking}; remove them from the service")
    if frame is not None:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise InvalidInput(f"the training frame lacks features {missing}; rebuild it with build_risk_training_set")
    return names


def _sources_fingerprint(settings: Settings) -> str | None:
    import hashlib

    files = sorted(path for path in settings.feast_dir.rglob("*.parquet") if path.is_file())
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(settings.feast_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_risk_frame(
    *,
    weeks: Sequence[str] = WEEKS,
    presentations: Sequence[str] | None = None,
    use_cache: bool = True,
    settings: Settings | None = None,
    service: str = RISK_SERVICE,
) -> pd.DataFrame:
    """Label rows with features through the Feast training-set builder (``pipelines.api``).

    The built frame is cached under ``cache_dir`` keyed by the feature sources' files (size + mtime), weeks and
    presentations: a rebuild of the sources invalidates it.
    """
    from pipelines.api import build_risk_training_set

    settings = settings or get_settings()
    fingerprint = _sources_fingerprint(settings)
    cache_path = None
    if use_cache and fingerprint:
        key = f"{service}-{fingerprint}-{'_'.join(map(str, weeks))}-{'_'.join(presentations or ['all'])}"
        cache_path = settings.cache_dir / "risk_training_set" / f"{key}.parquet"
        if cache_path.is_file():
            return pd.read_parquet(cache_path)
    try:
        frame = build_risk_training_set(weeks=list(weeks), presentations=presentations, service=service)
    except FileNotFoundError as exc:
        raise Unavailable(f"feature sources are missing ({exc}); run `learnloop features build` first") from exc
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(cache_path)
    return frame


def split_by_presentation(
    frame: pd.DataFrame, train: Sequence[str], test: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test rows by presentation code (``2014J``) or course (``AAA-2014J``); never a random row split."""
    overlap = set(train) & set(test)
    if overlap:
        raise InvalidInput(f"presentations {sorted(overlap)} are both train and test; hold out whole presentations")
    course = frame["code_module"].astype(str) + "-" + frame["code_presentation"].astype(str)

    def pick(keys: Sequence[str]) -> pd.Series:
        keys = set(keys)
        return frame["code_presentation"].isin(keys) | course.isin(keys)

    train_rows, test_rows = frame[pick(train)], frame[pick(test)]
    shared = set(train_rows["student_course"]) & set(test_rows["student_course"])
    if shared:
        raise InvalidInput(f"{len(shared)} registrations fall in both train and test; check the presentation keys")
    if train_rows.empty or test_rows.empty:
        raise InvalidInput(f"no rows for train {list(train)} or test {list(test)}; which presentations were built?")
    return train_rows.reset_index(drop=True), test_rows.reset_index(drop=True)


def monotonic_directions(features: Sequence[str]) -> dict[str, int]:
    directions = {}
    for name in features:
        if name in _INCREASING:
            directions[name] = 1
        elif any(re.match(pattern, name) for pattern in _DECREASING_PATTERNS) and "cohort" not in name:
            directions[name] = -1
    return directions


def _risk_pipeline(X, features: Sequence[str], recipe: RiskRecipe, directions: dict[str, int], *,
                   slope: float | None = None, intercept: float = 0.0):
    """Unfitted preprocessing + learner (+ Platt wrapper when ``slope`` is given) for fitting on ``X``.

    A feature with no value at all in ``X`` (e.g. clicks in a slice without click logs) carries no information and
    breaks HistGradientBoosting's binning, so it is routed through a constant imputer; it stays a model input.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from models.api import PlattCalibratedClassifier

    empty = [name for name in features if X[name].isna().all()]
    informative = [name for name in features if name not in set(empty)]
    if recipe.learner is Learner.hgb:
        parts = [("features", "passthrough", informative)]
        if empty:
            parts.append(("empty", SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True), empty))
        columns = ColumnTransformer(parts, verbose_feature_names_out=False)
        order = informative + empty
        learner = HistGradientBoostingClassifier(
            max_iter=recipe.max_iter, learning_rate=recipe.learning_rate, max_leaf_nodes=recipe.max_leaf_nodes,
            min_samples_leaf=recipe.min_samples_leaf, l2_regularization=recipe.l2_regularization,
            monotonic_cst=[directions.get(name, 0) if name in informative else 0 for name in order]
            if recipe.monotonic else None,
            early_stopping=False, random_state=recipe.random_state,
        )
    else:
        scaled = Pipeline([
            # No missing-indicator columns: skl2onnx 1.20 mis-shapes SimpleImputer(add_indicator=True).
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ])
        columns = ColumnTransformer([("features", scaled, list(features))], verbose_feature_names_out=False)
        learner = LogisticRegression(C=0.5, max_iter=2000)
    if slope is not None:
        learner = PlattCalibratedClassifier(learner, slope=slope, intercept=intercept)
    return Pipeline([("columns", columns), ("model", learner)])


def _held_out_groups(train: pd.DataFrame) -> np.ndarray:
    """Fold labels for in-training validation: presentations, or courses when there is a single presentation."""
    presentations = train["code_presentation"].astype(str).to_numpy()
    if len(set(presentations)) >= 2:
        return presentations
    return (train["code_module"].astype(str) + "-" + train["code_presentation"].astype(str)).to_numpy()


def _out_of_fold(X, y: np.ndarray, folds: np.ndarray, features: Sequence[str], recipe: RiskRecipe,
                 directions: dict[str, int], say: Callable[[str], None]) -> np.ndarray:
    """P(positive) for every row from a model fitted without its fold (leave one presentation out)."""
    predictions = np.empty(len(y))
    for held in sorted(set(folds)):
        say(f"held-out {held}")
        mask = folds == held
        model = _risk_pipeline(X[~mask], features, recipe, directions).fit(X[~mask], y[~mask])
        predictions[mask] = model.predict_proba(X[mask])[:, 1]
    return predictions


def _choose_capacity(X, y: np.ndarray, train: pd.DataFrame, features: Sequence[str], recipe: RiskRecipe,
                     directions: dict[str, int], say: Callable[[str], None]
                     ) -> tuple[RiskRecipe, dict[str, float], np.ndarray | None]:
    """The grid candidate with the best mean per-fold active AUC (weeks before the end), its scores by
    candidate, and its out-of-fold predictions (reused by calibration: the same fold models)."""
    folds = _held_out_groups(train)
    if not recipe.capacity_grid or recipe.learner is not Learner.hgb or len(set(folds)) < 2:
        return recipe, {}, None
    scored = train["active"].to_numpy(dtype=bool) & (train["week"].astype(str).to_numpy() != "end")
    best, best_score, best_predictions, scores = recipe, -np.inf, None, {}
    for max_iter, min_samples_leaf, max_leaf_nodes in recipe.capacity_grid:
        name = f"{max_iter}/{min_samples_leaf}/{max_leaf_nodes}"
        candidate = replace(recipe, max_iter=max_iter, min_samples_leaf=min_samples_leaf,
                            max_leaf_nodes=max_leaf_nodes)
        predictions = _out_of_fold(X, y, folds, features, candidate, directions,
                                   lambda text, name=name: say(f"capacity {name}: {text}"))
        aucs = [auc for held in sorted(set(folds))
                if (auc := _auc(y[(folds == held) & scored], predictions[(folds == held) & scored])) is not None]
        if not aucs:
            continue
        scores[name] = round(float(np.mean(aucs)), 4)
        if scores[name] > best_score:
            best, best_score, best_predictions = candidate, scores[name], predictions
    return best, scores, best_predictions


def select_capacity(
    train: pd.DataFrame,
    features: Sequence[str],
    recipe: RiskRecipe,
    *,
    progress: Callable[[str], None] | None = None,
) -> tuple[RiskRecipe, dict[str, float]]:
    """The candidate of ``recipe.capacity_grid`` with the best mean active AUC (weeks before the end) over
    leave-one-presentation-out folds of ``train`` — never the test rows. Returns the recipe with that capacity
    and the score of every candidate (empty without a grid)."""
    from models.api import infer_inputs, model_frame

    directions = monotonic_directions(features) if recipe.monotonic else {}
    chosen, scores, _ = _choose_capacity(model_frame(train, infer_inputs(train, features)),
                                         train["label"].to_numpy(), train, features, recipe, directions,
                                         progress or (lambda _text: None))
    return chosen, scores


def fit_risk_model(
    train: pd.DataFrame,
    features: Sequence[str],
    recipe: RiskRecipe,
    *,
    progress: Callable[[str], None] | None = None,
) -> FittedRisk:
    """Fit preprocessing + learner + Platt calibrator (cross-fitted by presentation) on ``train``; with a
    capacity grid in the recipe, the capacity is chosen first (:func:`select_capacity`)."""
    from models.api import fit_platt, infer_inputs, model_frame

    say = progress or (lambda _text: None)
    inputs = infer_inputs(train, features)
    directions = monotonic_directions(features) if recipe.monotonic else {}
    X = model_frame(train, inputs)
    y = train["label"].to_numpy()
    recipe, capacity_scores, out_of_fold = _choose_capacity(X, y, train, features, recipe, directions, say)
    slope, intercept = 1.0, 0.0
    if recipe.calibrate:
        folds = _held_out_groups(train)
        if len(set(folds)) < 2:
            raise InvalidInput("calibration needs rows from at least two presentations (or courses)")
        if out_of_fold is None:
            out_of_fold = _out_of_fold(X, y, folds, features, recipe, directions,
                                       lambda text: say(f"calibration: {text}"))
        # Calibrate for the students an instructor can still help; the monotone map keeps the others on top.
        active = train["active"].to_numpy(dtype=bool) if "active" in train else np.ones(len(train), dtype=bool)
        slope, intercept = fit_platt(out_of_fold[active], y[active])
    say("final fit")
    estimator = _risk_pipeline(X, features, recipe, directions, slope=slope, intercept=intercept).fit(X, y)
    return FittedRisk(estimator=estimator, inputs=inputs, slope=slope, intercept=intercept, monotonic=directions,
                      recipe=recipe, capacity_scores=capacity_scores)


def predict_native(fitted: FittedRisk, frame: pd.DataFrame) -> np.ndarray:
    from models.api import model_frame

    return fitted.estimator.predict_proba(model_frame(frame, fitted.inputs))[:, 1]


# ---------------------------------------------------------------- evaluation


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(labels) == 0 or len(set(labels.tolist())) < 2:
        return None
    return round(float(roc_auc_score(labels, scores)), 4)


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate − mean predicted| over equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.mean() * abs(labels[mask].mean() - scores[mask].mean())
    return float(error)


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric name (alphanumerics, ``_ - . : /`` and spaces only)."""
    return re.sub(r"[^A-Za-z0-9_\-.:/ ]", "_", ".".join(parts).replace("<=", "le").replace("%", "pct"))


def evaluate_scores(test: pd.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """Held-out figures: AUC by week (all and active), pooled active AUC, Brier, ECE, subgroup AUCs."""
    from sklearn.metrics import brier_score_loss

    labels = test["label"].to_numpy()
    active = test["active"].to_numpy(dtype=bool)
    weeks = [week for week in WEEKS if week in set(test["week"])]
    by_week, active_by_week, n_by_week = {}, {}, {}
    for week in weeks:
        rows = test["week"].to_numpy() == week
        by_week[week] = _auc(labels[rows], scores[rows])
        active_by_week[week] = _auc(labels[rows & active], scores[rows & active])
        n_by_week[week] = {"all": int(rows.sum()), "active": int((rows & active).sum())}
    subgroups: dict[str, dict[str, Any]] = {}
    for column in SUBGROUP_COLUMNS:
        values = test[column].astype("object").where(test[column].notna(), "unknown").astype(str).to_numpy()
        for value in sorted(set(values)):
            rows = active & (values == value)
            positives = int(labels[rows].sum())
            if rows.sum() < MIN_SUBGROUP_ROWS or min(positives, rows.sum() - positives) < MIN_SUBGROUP_CLASS_ROWS:
                continue
            subgroups[f"{column}:{value}"] = {"auc_active": _auc(labels[rows], scores[rows]), "n": int(rows.sum()),
                                              "positive_rate": round(positives / rows.sum(), 4),
                                              "mean_score": round(float(scores[rows].mean()), 4)}
    return {
        "auc_by_week": by_week,
        "auc_active_by_week": active_by_week,
        "auc": _auc(labels, scores),
        "auc_active": _auc(labels[active], scores[active]),
        "brier": round(float(brier_score_loss(labels, scores)), 4),
        "brier_active": round(float(brier_score_loss(labels[active], scores[active])), 4) if active.any() else None,
        "ece": round(expected_calibration_error(labels, scores), 4),
        "ece_active": round(expected_calibration_error(labels[active], scores[active]), 4) if active.any() else None,
        "n_by_week": n_by_week,
        "subgroups": subgroups,
        "n_test": int(len(test)),
    }


def flat_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The evaluation as MLflow metrics (what the promotion gate reads)."""
    metrics: dict[str, float] = {}
    for key in ("auc", "auc_active", "brier", "brier_active", "ece", "ece_active"):
        if evaluation.get(key) is not None:
            metrics[key] = float(evaluation[key])
    for family in ("auc_by_week", "auc_active_by_week"):
        for week, value in evaluation[family].items():
            if value is not None:
                metrics[metric_key(family, week)] = float(value)
    for group, figures in evaluation["subgroups"].items():
        if figures["auc_active"] is not None:
            metrics[metric_key("subgroup_auc_active", group)] = float(figures["auc_active"])
    metrics["n_test"] = float(evaluation["n_test"])
    return metrics


RISK_GATE_DEFAULTS = {"metric": "auc_active", "calibration_metric": "ece_active",
                      "subgroup_prefix": "subgroup_auc_active.", "tolerance": 0.005,
                      "max_calibration_error": 0.05, "max_subgroup_drop": 0.03, "min_subgroup_value": 0.65}


def risk_gate_policy(**overrides):
    """The promotion gate of the risk model (active-student AUC, calibration on active rows, subgroups)."""
    from training.data import GatePolicy

    return GatePolicy(**{**RISK_GATE_DEFAULTS, **overrides})


# ---------------------------------------------------------------- artifacts


def _plots(test: pd.DataFrame, scores: np.ndarray, evaluation: dict[str, Any], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    labels = test["label"].to_numpy()
    active = test["active"].to_numpy(dtype=bool)
    paths = {}
    figure, axis = plt.subplots(figsize=(5, 5))
    for week in evaluation["auc_active_by_week"]:
        rows = (test["week"].to_numpy() == week) & active
        if len(set(labels[rows].tolist())) == 2:
            fpr, tpr, _ = roc_curve(labels[rows], scores[rows])
            axis.plot(fpr, tpr, label=f"week {week} (AUC {evaluation['auc_active_by_week'][week]})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, active students, held out")
    axis.legend(loc="lower right")
    paths["plots/roc.png"] = folder / "roc.png"
    figure.savefig(paths["plots/roc.png"], dpi=90, bbox_inches="tight")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5, 5))
    for name, rows in (("active", active), ("all", np.ones_like(active))):
        observed, predicted = calibration_curve(labels[rows], scores[rows], n_bins=10, strategy="quantile")
        axis.plot(predicted, observed, marker="o", label=name)
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="predicted risk", ylabel="observed Withdrawn/Fail rate", title="Calibration, held out")
    axis.legend()
    paths["plots/calibration.png"] = folder / "calibration.png"
    figure.savefig(paths["plots/calibration.png"], dpi=90, bbox_inches="tight")
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    weeks = list(evaluation["auc_by_week"])
    for family, label in (("auc_by_week", "everyone"), ("auc_active_by_week", "active students")):
        axis.plot(weeks, [evaluation[family][w] for w in weeks], marker="o", label=label)
    axis.set(xlabel="week", ylabel="AUC", title="Held-out AUC by week", ylim=(0.5, 1.0))
    axis.legend()
    paths["plots/auc_by_week.png"] = folder / "auc_by_week.png"
    figure.savefig(paths["plots/auc_by_week.png"], dpi=90, bbox_inches="tight")
    plt.close(figure)
    return paths


def model_card(*, recipe: RiskRecipe, evaluation: dict[str, Any], features: Sequence[str], fitted: FittedRisk,
               train: pd.DataFrame, test: pd.DataFrame) -> str:
    """A Markdown model card: intended use, data, metrics (by week and subgroup), limits."""
    lines = [
        "# Model card: at-risk (P(Withdrawn or Fail))", "",
        "## Intended use",
        "Rank the students still registered in a presentation by their risk of withdrawing or failing, as of a "
        "given week, so instructors can reach out early. A decision aid for people, not an automated decision: "
        "never use it to deny enrolment, grade, or sanction.", "",
        "## Data",
        f"OULAD (CC BY 4.0) through FeatureService `{recipe.feature_service}` ({len(features)} features, point-in-time). "
        f"Train presentations {', '.join(recipe.train_presentations)} ({len(train):,} registration-weeks); held-out "
        f"presentations {', '.join(recipe.test_presentations)} ({len(test):,} registration-weeks). One row per "
        "registration and week (5, 10, 15, end); 'active' = still registered at the cutoff.", "",
        "## Model",
        f"{recipe.learner.value}"
        + (f" (max_iter {fitted.recipe.max_iter}, min_samples_leaf {fitted.recipe.min_samples_leaf}, max_leaf_nodes "
           f"{fitted.recipe.max_leaf_nodes}; chosen by leave-one-presentation-out active AUC on the training "
           f"presentations: {fitted.capacity_scores})" if fitted.capacity_scores else "")
        + f"; Platt scaling cross-fitted by presentation (slope {fitted.slope:.3f}, intercept "
        f"{fitted.intercept:.3f}); monotonic constraints: "
        + (", ".join(f"{name} {'+' if d > 0 else '-'}" for name, d in fitted.monotonic.items()) or "none") + ".", "",
        "## Held-out metrics",
        "| week | AUC (all) | AUC (active) | rows (all / active) |", "|---|---|---|---|",
    ]
    for week in evaluation["auc_by_week"]:
        counts = evaluation["n_by_week"][week]
        lines.append(f"| {week} | {evaluation['auc_by_week'][week]} | {evaluation['auc_active_by_week'][week]} | "
                     f"{counts['all']:,} / {counts['active']:,} |")
    lines += ["", f"Brier {evaluation['brier']} (active {evaluation['brier_active']}); expected calibration error "
              f"{evaluation['ece']} (active {evaluation['ece_active']}).", "",
              "## Subgroups (active students, all weeks pooled)",
              "| subgroup | AUC | rows | observed rate | mean predicted |", "|---|---|---|---|---|"]
    for group, figures in evaluation["subgroups"].items():
        lines.append(f"| {group} | {figures['auc_active']} | {figures['n']:,} | {figures['positive_rate']} | "
                     f"{figures['mean_score']} |")
    lines += ["", "## Limits",
              "- Trained on one UK distance-learning university in 2013–2014; other institutions need re-validation.",
              "- Click features exist only for AAA 2013J/2014J and BBB 2013B; elsewhere they are absent (NaN), so "
              "the model mostly relies on registration, assessment and history features.",
              "- Subgroup figures with fewer than "
              f"{MIN_SUBGROUP_ROWS} rows (or {MIN_SUBGROUP_CLASS_ROWS} per class) are not reported.",
              "- Risk is correlated with deprivation (IMD) and disability; use it to offer help, never to exclude.",
              "- Marks are assumed back 0 days (CMA) / 14 days (TMA) after submission, and a presentation's final "
              "result 14 days after its last day (pipelines.api).",
              "- Without click data, early discrimination is limited: active AUC at week 5 stays near 0.73 (one "
              "assessment or none due by day 35 in most modules)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- train / evaluate


@dataclass
class RiskRun:
    evaluation: dict[str, Any]
    fitted: FittedRisk
    features: list[str]
    version: Any = None  # ModelVersionInfo when registered
    parity_max_abs_diff: float | None = None


def train_risk(
    *,
    frame: pd.DataFrame | None = None,
    recipe: RiskRecipe | None = None,
    register: bool = True,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> RiskRun:
    """Fit on the train presentations, evaluate on the held-out ones, export to ONNX (parity asserted) and
    register the version as ``challenger`` with plots, model card and subgroup metrics."""
    from models.api import ModelSchema, export_sklearn_classifier
    from training import _registry

    settings = settings or get_settings()
    recipe = recipe or RiskRecipe()
    say = progress or (lambda _message: None)
    if frame is None:
        say(f"building the training set (Feast, {recipe.feature_service})")
        frame = load_risk_frame(service=recipe.feature_service)
    features = risk_features(frame, recipe.feature_service)
    train, test = split_by_presentation(frame, recipe.train_presentations, recipe.test_presentations)
    fitted = fit_risk_model(train, features, recipe, progress=say)
    scores = predict_native(fitted, test)
    evaluation = evaluate_scores(test, scores)
    say("exporting to ONNX")
    schema = ModelSchema(inputs=fitted.inputs, feature_service=recipe.feature_service,
                         feature_service_version=service_version(recipe.feature_service),
                         extra={"label": "P(final_result in {Withdrawn, Fail})", "weeks": list(WEEKS)})
    parity_rows = test.sample(n=min(len(test), 5000), random_state=0)
    export = export_sklearn_classifier(fitted.estimator, parity_rows, schema)
    run = RiskRun(evaluation=evaluation, fitted=fitted, features=features,
                  parity_max_abs_diff=export.parity_max_abs_diff)
    if not register:
        return run
    say("registering in MLflow")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        artifacts = _plots(test, scores, evaluation, folder)
        card = folder / "model_card.md"
        card.write_text(model_card(recipe=recipe, evaluation=evaluation, features=features, fitted=fitted,
                                   train=train, test=test))
        artifacts["model_card.md"] = card
        preprocessing = {
            "model_frame": "numeric features as float32, NaN kept (absent); see models.api.model_frame",
            "columns": "ColumnTransformer passthrough in FeatureService order" if recipe.learner is Learner.hgb
            else "median imputation + standard scaling",
            "calibration": {"method": "platt_on_logit", "slope": fitted.slope, "intercept": fitted.intercept,
                            "cross_fitted_by": "code_presentation"},
            "monotonic_constraints": fitted.monotonic,
        }
        run.version = _registry.register_onnx_model(
            name=RISK_MODEL_NAME, export=export, metrics=flat_metrics(evaluation), params=(fitted.recipe or recipe).params(),
            preprocessing=preprocessing, train_fingerprint=_registry.data_fingerprint(train[[*features, "label"]]),
            eval_fingerprint=_registry.data_fingerprint(test[["student_course", "week", "label"]]),
            artifacts=artifacts, json_artifacts={"evaluation.json": evaluation},
            description=f"at-risk model, held-out active AUC {evaluation['auc_active']}",
            gate_policy=risk_gate_policy(), tags={"learner": recipe.learner.value}, settings=settings,
            native_model=fitted.estimator, native_input_example=parity_rows.head(5),
        )
    return run


def _capacity_report(fitted: FittedRisk) -> dict[str, Any]:
    chosen = fitted.recipe
    return {"chosen": f"{chosen.max_iter}/{chosen.min_samples_leaf}/{chosen.max_leaf_nodes}" if chosen else None,
            "held_out_active_auc": fitted.capacity_scores}


def evaluate_risk(
    *,
    frame: pd.DataFrame | None = None,
    recipe: RiskRecipe | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The issue's protocol as one JSON-ready dict: AUC by week (all / active), AUC with clicks on AAA 2014J
    (trained on AAA 2013J + BBB 2013B), Brier, test presentations and row count."""
    recipe = recipe or RiskRecipe()
    say = progress or (lambda _message: None)
    if frame is None:
        say(f"building the training set (Feast, {recipe.feature_service})")
        frame = load_risk_frame(service=recipe.feature_service)
    main = train_risk(frame=frame, recipe=recipe, register=False, progress=say)
    _, test = split_by_presentation(frame, recipe.train_presentations, recipe.test_presentations)
    say("click model (AAA 2013J + BBB 2013B → AAA 2014J)")
    clicks_train, clicks_test = split_by_presentation(frame, CLICK_TRAIN_COURSES, CLICK_TEST_COURSES)
    click_recipe = replace(recipe, train_presentations=CLICK_TRAIN_COURSES, test_presentations=CLICK_TEST_COURSES)
    clicks_fitted = fit_risk_model(clicks_train, main.features, click_recipe, progress=say)
    clicks_eval = evaluate_scores(clicks_test, predict_native(clicks_fitted, clicks_test))
    main_on_aaa = evaluate_scores(clicks_test, predict_native(main.fitted, clicks_test))
    evaluation = main.evaluation
    return {
        "auc_by_week": evaluation["auc_by_week"],
        "auc_active_by_week": evaluation["auc_active_by_week"],
        "auc_clicks_active_by_week": clicks_eval["auc_active_by_week"],
        "auc_main_model_aaa_2014j_active_by_week": main_on_aaa["auc_active_by_week"],
        "brier": evaluation["brier"],
        "brier_active": evaluation["brier_active"],
        "ece_active": evaluation["ece_active"],
        "onnx_parity_max_abs_diff": main.parity_max_abs_diff,
        "test_presentations": sorted((test["code_module"] + "-" + test["code_presentation"]).unique().tolist()),
        "n_test": evaluation["n_test"],
        "n_test_active": int(test["active"].sum()),
        "learner": recipe.learner.value,
        "capacity": {"main": _capacity_report(main.fitted), "clicks": _capacity_report(clicks_fitted)},
        "feature_service": recipe.feature_service,
    }
