"""Where the two windows of a drift check come from, and which models are checked.

* **reference** — the served model's training data, rebuilt from what the model records about itself (never
  assumed from its name):

  - a registered champion recording a Feast FeatureService (model-version tag ``feature_service``, set by
    ``training.api.register_onnx_model`` from the model schema; its run param of that name otherwise):
    ``pipelines.api.build_risk_training_set(service=…)`` over the presentations and weeks it was trained on —
    its run params ``train_presentations``/``train_weeks`` or version tags ``train.presentations``/``train.weeks``
    (tags win), comma-separated ``2013J`` or ``AAA-2013J`` tokens; without them every presentation and the
    default weeks, with a warning — scored by the champion;
  - a registered champion whose version logged a sample of its training inputs (version tag ``drift_reference``,
    set by ``training.api.register_onnx_model(reference_sample=…)``): that sample, read from the champion's run
    (never "latest"), scored by the champion. The recommender's trainer logs one (``learnloop train recommender``:
    10,000 of the ranker's (learner, not-yet-opened item) training rows, drawn the way serving samples the
    candidates of a scored list; ``recommender._recommend.learned.reference_sample``), whose rows name their
    course: :func:`match_course_mix` resamples it to the current window's courses, so each course's traffic is
    compared with the rows of that course (courses differ far more than a course drifts) and a course the model
    never learned from with the whole training mix. A recommender champion registered before that has no
    reference: :class:`NothingToCheck` saying to retrain (skipped, not failed);
  - an essay grader ``essay_grader_p<prompt>`` (served from ``<data_dir>/grading``, not from the registry): the
    prompt's graded essays it learned from (``essays_path`` in its ``meta.json``; the configured data sets for
    graders saved before that was recorded), graded by it: ``n_words`` and ``confidence`` (what the platform logs
    with each instructor decision), its score as ``prediction``, the essay's score as ``label``.

  Any other model has no reference and its check fails saying so.
* **current** — the prediction log of the last ``days`` days (what the model actually saw), narrowed to the answers
  of the version the reference was scored by (:func:`answered_by`: after a promotion, the previous champion's
  answers would read as prediction drift), labels joined by
  ``student_course`` where final results exist. Lines whose model logged a sample of several input rows per answer
  (``inputs``: the recommender's treatment lists carry the ranker's features for 8 uniformly drawn candidates)
  give one row per sampled row, with the ranker's score as ``prediction``; at least ``min_rows`` such lists are
  needed. No predictions, or log lines holding neither model inputs nor scores (control-arm and cold-start lists,
  lists logged before serving logged the ranker's inputs), raise :class:`NothingToCheck`: skipped, not failed.
* **presentations** — any OULAD presentations (``2013J`` = every module of that presentation, or ``AAA-2013J``)
  built the same way, so drift between an early and a later cohort can be measured on real data today.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput, NotFound, Unavailable
from learnloop.settings import Settings

if TYPE_CHECKING:
    from training.api import ModelVersionInfo

log = logging.getLogger(__name__)

RISK_MODEL = "risk"
RECOMMENDER_MODEL = "recommender"  # recommender.api.RANKER_MODEL (its trainer logs a drift reference sample)
_ESSAY_MODEL = re.compile(r"^essay_grader_p(?P<prompt>\d+)$")  # grading_nlp's name per prompt (serving logs it)
# Subgroup/bookkeeping columns of a training set that are not model inputs.
_NOT_FEATURES = {"student_course", "id_student", "code_module", "code_presentation", "week", "cutoff_day",
                 "active", "has_clicks", "label", "gender", "age_band", "disability", "imd_band"}


class NothingToCheck(Unavailable):
    """The current window has nothing a drift check could compare (no predictions, or no inputs or scores)."""


@dataclass
class Window:
    frame: pd.DataFrame
    features: list[str]
    description: str
    categorical: list[str] = field(default_factory=list)  # features that are codes, not quantities
    # A reference whose rows carry this column (the recommender's ``course_id``) is resampled to the current
    # window's mix of it before the check (:func:`match_course_mix`).
    match_on: str | None = None
    # The model version whose scores ``prediction`` holds (a reference scored by the champion): the current window
    # is then narrowed to the answers that version gave (:func:`answered_by`).
    version: str | None = None


def served_models(settings: Settings) -> list[str]:
    """What ``learnloop drift check`` checks by default: every registered model with a champion and every essay
    grader saved for serving (the demo does not register those)."""
    from grading_nlp.api import trained_essay_models
    from training.api import list_models

    names = {v.name for v in list_models(settings=settings) if "champion" in v.aliases}
    names |= {f"essay_grader_p{meta['prompt']}" for meta in trained_essay_models(settings=settings)}
    return sorted(names)


def unknown_models(names: Sequence[str], settings: Settings) -> list[str]:
    """The names among ``names`` that are no model a drift check could watch: neither registered nor an essay grader
    (``essay_grader_p<prompt>``, served from the data dir). Checked anyway, a typo was recorded as a skipped model
    that stayed on ``drift status`` and /operator for good."""
    others = [name for name in names if not _ESSAY_MODEL.match(name)]
    if not others:
        return []
    from training.api import list_models

    registered = {v.name for v in list_models(settings=settings)}
    return [name for name in others if name not in registered]


def presentation_models(settings: Settings) -> list[str]:
    """What ``learnloop drift check --reference-presentations … --current-presentations …`` compares by default: the
    champions that record a Feast FeatureService (the at-risk model), the only models whose inputs OULAD
    presentations give. Essay graders and the recommender have no presentation rows; comparing them failed the run."""
    from training.api import list_models

    names = []
    for version in list_models(settings=settings):
        if "champion" not in version.aliases:
            continue
        if version.tags.get("feature_service") or _run_params(version.run_id, settings).get("feature_service"):
            names.append(version.name)
    return sorted(set(names))


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
    """Risk training rows of the given presentations (the champion's FeatureService when one is registered),
    scored by the champion."""
    from pipelines.api import RISK_SERVICE, build_risk_training_set

    champion = _champion(model_name, settings)
    service = _feature_service(champion, settings) if champion is not None else RISK_SERVICE
    keys = presentation_keys(tokens, settings)
    frame = build_risk_training_set(weeks=weeks, presentations=keys, service=service)
    if frame.empty:
        raise InvalidInput(f"no label rows for presentations {', '.join(tokens)} and weeks {list(weeks)}")
    features = [c for c in frame.columns if c not in _NOT_FEATURES]
    if score:
        frame, features = _score_with_champion(frame, features, model_name, settings)
    return Window(frame, features, f"presentations {','.join(tokens)} weeks {','.join(map(str, weeks))}")


def champion_reference(model_name: str, *, settings: Settings, weeks: Sequence[int | str]) -> Window:
    """The served model's training data (see the module docstring for how it is found)."""
    essay = _ESSAY_MODEL.match(model_name)
    if essay is not None:
        return _essay_reference(model_name, int(essay["prompt"]), settings)
    champion = _champion(model_name, settings)
    if champion is None:
        from training.data import train_command

        raise NotFound(f"model {model_name} has no champion; train and promote one first "
                       f"(`{train_command(model_name)}` then `learnloop promote {model_name}`)")
    logged = _logged_reference(champion, settings)
    if logged is not None:
        return logged
    service = _feature_service(champion, settings)
    scope = {**_run_params(champion.run_id, settings), **champion.tags}
    presentations = [p for p in (scope.get("train.presentations") or scope.get("train_presentations") or ""
                                 ).split(",") if p]
    tagged_weeks = [w for w in (scope.get("train.weeks") or scope.get("train_weeks") or "").split(",") if w]
    if not presentations:
        log.warning("%s v%s carries no train.presentations tag; using every presentation as reference",
                    model_name, champion.version)
    from pipelines.api import build_risk_training_set

    frame = build_risk_training_set(weeks=tagged_weeks or weeks, service=service,
                                    presentations=presentation_keys(presentations, settings) if presentations else None)
    features = [c for c in frame.columns if c not in _NOT_FEATURES]
    frame, features = _score_with_champion(frame, features, model_name, settings)
    return Window(frame, features, f"{model_name} v{champion.version} training data ({service})",
                  version=str(champion.version))


def _champion(model_name: str, settings: Settings) -> ModelVersionInfo | None:
    from training.api import list_models

    return next((v for v in list_models(model_name, settings=settings) if "champion" in v.aliases), None)


def _logged_reference(champion: ModelVersionInfo, settings: Settings) -> Window | None:
    """The training-input sample the champion's version logged, scored by the champion (None: it logged none and
    is not the recommender, whose reference can only be that sample)."""
    from training.api import drift_reference

    frame = drift_reference(champion, settings=settings)
    if frame is None:
        if champion.name == RECOMMENDER_MODEL:
            raise NothingToCheck(
                f"{champion.name} v{champion.version} (the champion) was trained before training logged a sample of "
                "the ranker's inputs with the model, so there is no reference to compare its served inputs with; "
                "retrain it (`learnloop train recommender`, then `learnloop promote recommender`) to monitor it")
        return None
    features = [c for c in frame.columns if c not in _NOT_FEATURES and c not in _SAMPLE_COLUMNS]
    frame, features = _score_with_champion(frame, features, champion.name, settings)
    categorical = [name for name in ("item_content_kind",) if name in features]  # the ranker's content-kind code
    return Window(frame, features, f"{champion.name} v{champion.version} training sample "
                  f"({len(frame):,} rows logged with the model)", categorical=categorical,
                  match_on="course_id" if "course_id" in frame.columns else None, version=str(champion.version))


# Columns of a logged reference sample that describe its rows, not model inputs.
_SAMPLE_COLUMNS = {"course_id", "prediction", "sample_weight"}
# A course with fewer reference rows than this is compared with the whole reference (too few to stand for it).
MIN_MATCHED_ROWS = 200


def match_course_mix(reference: Window, current: Window, *, seed: int = 0) -> Window:
    """``reference`` resampled (to its size) to the mix of ``reference.match_on`` values (courses) in ``current``:
    each course's share of the current rows is drawn from that course's reference rows when it has at least
    ``MIN_MATCHED_ROWS``, else from the whole reference in the training mix (``sample_weight``). So a course is
    compared with what the model learned from it, and a course it never learned from with everything it learned
    from. Unchanged when no current course is in the reference (the reference then is the training mix as is)."""
    column = reference.match_on
    if column is None or column not in current.frame.columns or column not in reference.frame.columns:
        return reference
    ref = reference.frame.reset_index(drop=True)
    weight = ref["sample_weight"].to_numpy(dtype=float) if "sample_weight" in ref.columns else np.ones(len(ref))
    pools = {str(key): rows for key, rows in ref.groupby(ref[column].astype(str)).indices.items()
             if len(rows) >= MIN_MATCHED_ROWS}
    shares = current.frame[column].astype(str).value_counts(normalize=True)
    known = shares[shares.index.isin(list(pools))]
    if known.empty:
        if np.allclose(weight, weight[0], rtol=0.01):  # equal up to rounding: no course was topped up
            return reference
        known_share, picks = 0.0, [np.random.default_rng(seed).choice(len(ref), size=len(ref), p=weight / weight.sum())]
    else:
        rng = np.random.default_rng(seed)
        known_share, picks = float(known.sum()), []
        for course, share in shares.items():
            size = int(round(len(ref) * share))
            pool = pools.get(course)
            if pool is None:
                picks.append(rng.choice(len(ref), size=size, p=weight / weight.sum()))
            else:
                picks.append(rng.choice(pool, size=size, replace=size > len(pool)))
    frame = ref.iloc[np.concatenate(picks)].reset_index(drop=True)
    return Window(frame, reference.features,
                  f"{reference.description}, matched to the current window's courses ({known_share:.0%} of its rows "
                  "from courses the model learned from)", categorical=reference.categorical, match_on=None,
                  version=reference.version)


def _feature_service(champion: ModelVersionInfo, settings: Settings) -> str:
    """The FeatureService the champion was trained on, as it recorded it (tag, else run param)."""
    service = champion.tags.get("feature_service") or _run_params(champion.run_id, settings).get("feature_service")
    if not service:
        raise InvalidInput(f"{champion.name} v{champion.version} records no Feast FeatureService (no "
                           "feature_service tag or param), so its training data cannot be rebuilt as the drift "
                           "reference; monitoring has no reference for this model")
    return service


def _essay_reference(model_name: str, prompt: int, settings: Settings) -> Window:
    from grading_nlp.api import grade_essays, trained_essay_models
    from learnloop.datasets import load_essays

    meta = next((m for m in trained_essay_models(settings=settings) if int(m["prompt"]) == prompt), None)
    if meta is None:
        raise NotFound(f"no essay grader is saved for prompt {prompt} under {settings.data_path / 'grading'}; "
                       "train one first (`learnloop train essays`)")
    path = meta.get("essays_path")
    if path is None:
        log.warning("%s (%s) does not record the essays it learned from; using the configured data sets",
                    model_name, meta["model_version"])
    essays = load_essays(Path(path) if path else None)
    essays = essays[essays["essay_set"] == prompt].reset_index(drop=True)
    if essays.empty:
        raise InvalidInput(f"no graded essays of prompt {prompt} in {path or 'the configured data sets'}; "
                           f"cannot rebuild the training data of {model_name}")
    if len(essays) != meta.get("n_train"):
        log.warning("%s learned from %s essays, the reference has %d", model_name, meta.get("n_train"), len(essays))
    grades = grade_essays([(text, prompt) for text in essays["essay"].astype(str)], settings=settings)
    frame = pd.DataFrame({
        # The platform logs these two with each instructor decision (platform_api's grading review).
        "n_words": [len(text.split()) for text in essays["essay"].astype(str)],
        "confidence": [grade.confidence for grade in grades],
        "prediction": [grade.score for grade in grades],
        "label": essays["domain1_score"].astype(float),
    })
    frame = frame[frame["prediction"].notna()].reset_index(drop=True)  # the platform logs suggested grades only
    return Window(frame, ["n_words", "confidence"], f"{model_name} ({meta['model_version']}) training essays",
                  version=str(meta["model_version"]))


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


# Fewer logged predictions than this are not a window: two rows "drift" on almost every feature, and a drift
# check that retrains would retrain on noise. Skipped with the count instead, until enough traffic was served.
MIN_CURRENT_ROWS = 50


def prediction_log_window(model_name: str, *, settings: Settings, days: float,
                          now: datetime | None = None, min_rows: int = MIN_CURRENT_ROWS) -> Window:
    """The last ``days`` days of the prediction log of ``model_name``, labels joined where known (at least
    ``min_rows`` predictions, else :class:`NothingToCheck`)."""
    from pipelines.monitoring._prediction_log import read_prediction_log

    until = now or datetime.now(UTC)
    frame = read_prediction_log(settings.data_path, model_name=model_name, since=until - timedelta(days=days),
                                until=until)
    if frame.empty:
        raise NothingToCheck(f"no predictions of {model_name} logged in the last {days:g} days under "
                             f"{settings.data_path / 'predictions'}; is serving running with the prediction log on?")
    if len(frame) < min_rows:
        raise NothingToCheck(f"only {len(frame)} predictions of {model_name} logged in the last {days:g} days; a "
                             f"drift check needs at least {min_rows} (fewer would flag noise as drift and retrain "
                             "on it)")
    features = list(frame.attrs.get("feature_columns", []))
    if not features and frame["prediction"].isna().all():
        return _sampled_inputs_window(model_name, n_lines=len(frame), settings=settings, days=days, until=until,
                                      min_rows=min_rows)
    if "student_course" in frame.columns and "label" not in frame.columns:
        frame = _join_labels(frame, settings)
    return Window(frame, features, f"prediction log, last {days:g} days")


def _sampled_inputs_window(model_name: str, *, n_lines: int, settings: Settings, days: float, until: datetime,
                           min_rows: int) -> Window:
    """The rows of the lines that carry a sample of their inputs (the recommender's scored lists)."""
    from pipelines.monitoring._prediction_log import read_logged_inputs

    frame = read_logged_inputs(settings.data_path, model_name=model_name, since=until - timedelta(days=days),
                               until=until)
    lists = int(frame.attrs.get("lines", 0))
    if frame.empty:
        raise NothingToCheck(f"the {n_lines} logged predictions of {model_name} hold no model inputs and no "
                             "numeric score (only what was served: control-arm and cold-start lists, or lines "
                             "logged before serving logged the ranker's inputs), so there is nothing to compare with "
                             "its training data")
    if lists < min_rows:
        raise NothingToCheck(f"only {lists} of the {n_lines} predictions of {model_name} logged in the last "
                             f"{days:g} days carry the model's inputs (lists the ranker scored); a drift check needs "
                             f"at least {min_rows} (fewer would flag noise as drift and retrain on it)")
    return Window(frame, list(frame.attrs["feature_columns"]),
                  f"prediction log, last {days:g} days: the ranker's inputs for {len(frame):,} sampled candidates of "
                  f"{lists:,} scored lists")


def answered_by(current: Window, version: str | None, *, min_rows: int = MIN_CURRENT_ROWS) -> Window:
    """``current`` narrowed to the answers ``version`` gave: the reference is scored by the champion, so a window
    that still holds the previous champion's answers (the days after a promotion) would show its scores as
    prediction drift and retrain for nothing. Fewer than ``min_rows`` answers (lists, for sampled inputs) of that
    version: :class:`NothingToCheck`. Unchanged when ``version`` is None or the log names no versions."""
    frame = current.frame
    column = "scored_by" if "scored_by" in frame.columns else "model_version"
    if version is None or column not in frame.columns or frame[column].isna().all():
        return current
    mine = frame[frame[column].astype("string") == str(version)]
    if len(mine) == len(frame):
        return current
    answers = mine["line"].nunique() if "line" in mine.columns else len(mine)
    total = frame["line"].nunique() if "line" in frame.columns else len(frame)
    if answers < min_rows:
        raise NothingToCheck(f"only {answers} of the {total} logged answers in the window are by v{version}, the "
                             f"version checked (the others came from an earlier one); a drift check needs at least "
                             f"{min_rows} of its own, so it waits for more traffic (or use a shorter --days)")
    return Window(mine.reset_index(drop=True), current.features,
                  f"{current.description}, answers of v{version} only ({answers:,} of {total:,})",
                  categorical=current.categorical, match_on=current.match_on, version=current.version)


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
