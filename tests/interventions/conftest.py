"""Interventions fixtures (helpers live in ``interventions_fixtures.py``): one world per session — the Feast
online store, the MLflow registry with a small champion, the platform database — and the job's first run."""

from __future__ import annotations

import os

import pytest
from interventions_fixtures import (
    NOW,
    SERVICE,
    World,
    seed_platform,
    train_champion,
    write_online_store,
)

from learnloop.settings import get_settings


@pytest.fixture(scope="session")
def interventions_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from threadpoolctl import threadpool_limits

    data_dir = tmp_path_factory.mktemp("interventions") / "var"
    saved = {key: os.environ.get(key) for key in ("LEARNLOOP_DATA_DIR", "LEARNLOOP_ENV")}
    os.environ["LEARNLOOP_DATA_DIR"] = str(data_dir)
    os.environ["LEARNLOOP_ENV"] = "test"
    get_settings.cache_clear()
    settings = get_settings()
    settings.ensure_dirs()
    from features.api import feature_names
    from pipelines.interventions.api import InterventionPolicy, run_interventions

    with threadpool_limits(limits=1):  # OpenMP spin-waits badly on the shared 2 cores
        write_online_store(settings)
        train_champion(settings, feature_names(SERVICE))
    world = seed_platform(settings)
    summary = run_interventions(settings=settings, policy=InterventionPolicy(threshold=0.5), now=NOW, recommend=None)
    world.first_run = summary.to_dict()
    yield world
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
