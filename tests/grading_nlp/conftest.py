"""Fixtures for the essay grader: a small synthetic ASAP-format corpus and models trained once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from grading_fixtures import synthetic_essay, synthetic_essays, write_tsv  # noqa: F401, E402

from learnloop.settings import Settings


@pytest.fixture(scope="session")
def grading_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A data dir of its own holding trained graders: prompt 3 full (320 essays), prompt 2 few-shot (50)."""
    from grading_nlp.api import train_essay_models

    root = tmp_path_factory.mktemp("grading")
    settings = Settings(data_dir=root / "var")
    settings.ensure_dirs()
    corpus = synthetic_essays({3: 320, 2: 50, 1: 10})
    summaries = train_essay_models(write_tsv(corpus, root / "essays.tsv"), settings=settings)
    assert {s["prompt"]: s.get("kind") for s in summaries} == {1: None, 2: "few_shot", 3: "full"}
    return settings


@pytest.fixture(scope="session")
def real_prompt_settings(tmp_path_factory: pytest.TempPathFactory, real_datasets_dir: Path) -> Settings:
    """A full grader trained on a slice of real prompt 4 (450 short essays), for behavioural tests."""
    from grading_nlp.api import train_essay_models
    from learnloop.datasets import load_essays

    root = tmp_path_factory.mktemp("grading-real")
    settings = Settings(data_dir=root / "var")
    settings.ensure_dirs()
    essays = load_essays(real_datasets_dir / "asap_aes" / "essays.tsv")
    essays = essays[essays["essay_set"] == 4].head(450)
    train_essay_models(write_tsv(essays, root / "essays.tsv"), settings=settings)
    return settings


@pytest.fixture(scope="session")
def essay_maker():
    """``essay_maker(quality, seed)`` → a synthetic essay (quality in [0, 1])."""
    return lambda quality, seed: synthetic_essay(quality, np.random.default_rng(seed))
