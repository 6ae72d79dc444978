"""Serving test world: one data dir per session with a real Feast online store (written through Feast) and a real
MLflow registry holding a GBM risk champion registered through ``training.api`` — the layout serving reads in
production. The service itself runs as a ``bentoml serve`` subprocess."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from learnloop.settings import Settings

SERVICE = "student_risk_v1"
COURSE = "AAA-2013J"
OTHER_COURSE = "BBB-2013J"
STUDENT_FULL = 1001  # every view has a row: scored
STUDENT_NEW = 1002  # only the registration profile: cold start
STUDENT_OTHER = 1003  # enrolled only in OTHER_COURSE: not enrolled in COURSE
UNKNOWN_STUDENT = 9999
UNKNOWN_COURSE = "ZZZ-2099J"


@dataclass
class ServingWorld:
    settings: Settings
    feature_names: list[str]
    full_features: dict[str, float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_online_store(store) -> dict[str, float]:
    from features import api as features_api

    features_api.apply(store)
    rng = np.random.default_rng(7)
    now = datetime.now(UTC).replace(microsecond=0)
    registrations = {f"{STUDENT_FULL}:{COURSE}": "all", f"{STUDENT_NEW}:{COURSE}": "profile",
                     f"{STUDENT_OTHER}:{OTHER_COURSE}": "all"}
    keys_by_join = {
        "student_course": None,
        "id_student": [STUDENT_FULL, STUDENT_NEW, STUDENT_OTHER],
        "course": [COURSE, OTHER_COURSE],
    }
    full: dict[str, float] = {}
    for view in features_api.view_names():
        join_key = features_api.view_join_key(view)
        names = features_api.view_features(view)
        if join_key == "student_course":
            keys = [key for key, kind in registrations.items() if kind == "all" or view == "student_course_profile"]
        elif join_key in keys_by_join:
            keys = keys_by_join[join_key]
        else:
            continue
        frame = pd.DataFrame({join_key: keys})
        for name in names:
            values = rng.normal(size=len(keys)).round(3)
            if len(keys) > 1:
                values[-1] = np.nan  # a null value must read back as missing, exactly like Feast
            frame[name] = values.astype("float64")
        frame["event_timestamp"] = now
        frame["created_timestamp"] = now
        store.write_to_online_store(view, frame)
        first = frame.iloc[0]
        if join_key == "student_course" or first[join_key] in (STUDENT_FULL, COURSE):
            full.update({name: float(first[name]) for name in names})
    return full


def _gbm_export(names: list[str], *, seed: int, n_estimators: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs, model_frame

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(600, len(names))), columns=names)
    frame.iloc[::7, 3] = np.nan
    label = ((frame.iloc[:, 0].fillna(0) + (seed % 3) * frame.iloc[:, 1] + rng.normal(scale=0.7, size=600)) > 0)
    schema = ModelSchema(inputs=infer_inputs(frame, names), feature_service=SERVICE, feature_service_version="1")
    prepared = model_frame(frame, schema.inputs)
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([("numeric", SimpleImputer(strategy="median"), names)])),
        ("gbm", GradientBoostingClassifier(n_estimators=n_estimators, max_depth=3, random_state=seed)),
    ]).fit(prepared, label.astype(int))
    return export_sklearn_classifier(pipeline, frame.iloc[:100], schema)


def register_and_promote(settings: Settings, names: list[str], *, seed: int, n_estimators: int = 40) -> str:
    """Train a small GBM, register it as challenger and force-promote it to champion; returns the version."""
    from training.api import promote, register_onnx_model

    export = _gbm_export(names, seed=seed, n_estimators=n_estimators)
    info = register_onnx_model(name="risk", export=export, metrics={"auc": 0.7, "ece": 0.02},
                               train_fingerprint=f"train-{seed}", eval_fingerprint="eval", settings=settings)
    decision = promote("risk", force_reason="serving test fixture", settings=settings)
    assert decision.champion_version == info.version
    return info.version


@dataclass
class RunningService:
    url: str
    process: object
    log_path: Path


ESSAY_PROMPT = 2  # ASAP prompt 2 (scores 1-6): a few-shot grader from 60 synthetic essays


def synthetic_essay(quality: float, rng: np.random.Generator) -> str:
    """An essay whose length and vocabulary grow with ``quality`` in [0, 1] (enough signal for a few-shot grader)."""
    plain = ["good", "thing", "people", "like", "very", "get", "think", "nice", "lot", "time", "use", "help"]
    rich = ["consequently", "furthermore", "significant", "perspective", "evidence", "nevertheless", "analysis",
            "essential", "influence", "beneficial", "therefore", "moreover", "technology", "ultimately"]
    filler = ["the", "a", "and", "to", "of", "in", "is", "that", "it", "for", "we", "can"]
    words, sentences = [], []
    for _ in range(max(int(40 + 220 * quality + rng.normal(0, 10)), 15)):
        pick = rng.random()
        pool = filler if pick < 0.45 else (rich if pick < 0.45 + 0.45 * quality else plain)
        words.append(pool[int(rng.integers(len(pool)))])
        if len(words) >= int(rng.integers(8, 16)):
            sentences.append(" ".join(words).capitalize() + ".")
            words = []
    if words:
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def train_essay_grader(settings: Settings, tmp_dir: Path, *, count: int = 60) -> None:
    """Train ``grading_nlp``'s grader for ``ESSAY_PROMPT`` on synthetic ASAP-format essays (its public API)."""
    import csv

    from grading_nlp.api import train_essay_models

    rng = np.random.default_rng(11)
    rows = []
    for essay_id, quality in enumerate(rng.beta(2.0, 2.0, size=count), start=1):
        score = int(np.clip(round(1 + quality * 5 + rng.normal(0, 0.3)), 1, 6))
        rows.append({"essay_id": essay_id, "essay_set": ESSAY_PROMPT, "fold": essay_id % 5,
                     "essay": synthetic_essay(float(quality), rng), "domain1_score": score,
                     "rater1_domain1": score, "rater2_domain1": score})
    path = tmp_dir / "essays.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    summaries = train_essay_models(path, prompts=[ESSAY_PROMPT], settings=settings)
    assert summaries and summaries[0].get("kind"), summaries
