"""Where the two windows of a drift check come from.

* **reference** — the champion's training data: ``pipelines.api.build_risk_training_set`` over the presentations
  and weeks the champion was trained on: its training run's params ``train_presentations``/``train_weeks``
  (as ``training.api.train_risk`` logs them) or model-version tags ``train.presentations``/``train.weeks``
  (tags win) — comma-separated ``2013J`` or ``AAA-2013J`` tokens; without them every presentation and the
  default weeks, with a warning.
* **current** — the prediction log of the last ``days`` days (what the model actually saw), labels joined by
  ``student_course`` where final results exist.
* **presentations** — any OULAD presentations (``2013J`` = every module of that presentation, or ``AAA-2013J``)
  built the same way, so drift between an early and a later cohort can be measured on real data today.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from learnloop.errors import InvalidInput, NotFound, Unavailable
from learnloop.settings import Settings

log = logging.getLogger(__name__)

RISK_MODEL = "risk"
# Subgroup/bookkeeping columns of a training set that are not model inputs.
_NOT_FEATURES = {"student_course", "id_student", "code_module", "code_presentation", "week", "cutoff_day",
                 "active", "has_clicks", "label", "gender", "age_band", "disability", "imd_band"}


@dataclass
class Window:
    frame: pd.DataFrame
    features: list[str]
    description: str


def presentation_keys(tokens: Sequence[str], settings: Settings) -> list[str]:
    """``2013J`` → every ``<module>-2013J`` course key that exists; ``AAA-2013J`` passes through."""
    from pipelines.api import risk_label_frame

    courses = risk_label_frame(weeks=("end",), feast_dir=settings.feast_dir)[
        ["code_module", "code_presentation"]].drop_duplicates()
    keys: list[str] = []
    for token in tokens:
        token = token.strip()
        if len(token) == 5 and token[:4].isdigit():
            matched = courses[courses["code_presentation"] == token]
            if matched.empty:
                raise InvalidInput(f"presentation {token} is not in the built feature sources (known: "
                                   f"{', '.join(sorted(courses['code_presentation'].unique()))})")
            keys += [f"{m}-{token}" for m in matched["code_module"]]
        else:
            keys.append(token)
    return keys


def presentations_window(tokens: Sequence[str], *, weeks: Sequence[int | str], settings: Settings,
                         model_name: str = RISK_MODEL, score: bool = True) -> Window:
    """Risk training rows of the given presentations, scored by the champion when one is registered."""
    from pipelines.api import build_risk_training_set

    keys = presentation_keys(tokens, settings)
    frame = build_risk_training_set(weeks=weeks, presentations=keys)
    if frame.empty:
        raise InvalidInput(f"no label rows for presentations {', '.join(tokens)} and weeks {list(weeks)}")
    features = [c for c in frame.columns if c not in _NOT_FEATURES]
    if score:
        frame, features = _score_with_champion(frame, features, model_name, settings)
    return Window(frame, features, f"presentations {','.join(tokens)} weeks {','.join(map(str, weeks))}")


def champion_reference(model_name: str, *, settings: Settings, weeks: Sequence[int | str]) -> Window:
    """The champion's training data (see the module docstring for how its scope is found)."""
    from training.api import list_models

    champion = next((v for v in list_models(model_name, settings=settings) if "champion" in v.aliases), None)
    if champion is None:
        raise NotFound(f"model {model_name} has no champion; train and promote one first "
                       f"(`learnloop train {model_name}` then `learnloop promote {model_name}`)")
    scope = {**_run_params(champion.run_id, settings), **champion.tags}
    presentations = [p for p in (scope.get("train.presentations") or scope.get("train_presentations") or ""
                                 ).split(",") if p]
    tagged_weeks = [w for w in (scope.get("train.weeks") or scope.get("train_weeks") or "").split(",") if w]
    if not presentations:
        log.warning("%s v%s carries no train.presentations tag; using every presentation as reference",
                    model_name, champion.version)
    from pipelines.api import build_risk_training_set

    frame = build_risk_training_set(weeks=tagged_weeks or weeks,
                                    presentations=presentation_keys(presentations, settings) if presentations else None)
    features = [c for c in frame.columns if c not in _NOT_FEATURES]
    frame, features = _score_with_champion(frame, features, model_name, settings)
    return Window(frame, features, f"{model_name} v{champion.version} training data")


def _run_params(run_id: str | None, settings: Settings) -> dict[str, str]:
    """The champion's training-run params (``training.api`` logs ``train_presentations`` there)."""
    if not run_id:
        return {}
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return dict(MlflowClient(tracking_uri=settings.mlflow_uri).get_run(run_id).data.params)
    except MlflowException as exc:
        log.warning("cannot read the params of run %s (%s); reference scope unknown", run_id, exc)
        return {}


def prediction_log_window(model_name: str, *, settings: Settings, days: float,
                          now: datetime | None = None) -> Window:
    """The last ``days`` days of the prediction log of ``model_name``, labels joined where known."""
    from pipelines.monitoring._prediction_log import read_prediction_log

    until = now or datetime.now(UTC)
    frame = read_prediction_log(settings.data_path, model_name=model_name, since=until - timedelta(days=days),
                                until=until)
    if frame.empty:
        raise Unavailable(f"no predictions of {model_name} logged in the last {days:g} days under "
                          f"{settings.data_path / 'predictions'}; is serving running with the prediction log on?")
    features = list(frame.attrs.get("feature_columns", []))
    if "student_course" in frame.columns and "label" not in frame.columns:
        frame = _join_labels(frame, settings)
    return Window(frame, features, f"prediction log, last {days:g} days")


def _join_labels(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    from pipelines.api import risk_label_frame

    try:
        labels = risk_label_frame(weeks=("end",), feast_dir=settings.feast_dir)[["student_course", "label"]]
    except Unavailable:
        return frame  # no outcomes known yet: drift only, no performance
    return frame.merge(labels.drop_duplicates("student_course"), on="student_course", how="left")


def _score_with_champion(frame: pd.DataFrame, features: list[str], model_name: str,
                         settings: Settings) -> tuple[pd.DataFrame, list[str]]:
    """Add the champion's ``prediction`` and restrict features to its inputs; unchanged without a champion."""
    from models.api import OnnxClassifier, load_champion_onnx

    try:
        champion = load_champion_onnx(model_name, settings=settings)
    except NotFound:
        log.info("%s has no champion: drift of features only, no prediction drift or performance", model_name)
        return frame, features
    model = OnnxClassifier(champion[0], champion[1])
    frame = frame.copy()
    frame["prediction"] = model.predict_proba(frame)
    return frame, [name for name in champion[1].feature_names if name in frame.columns]
