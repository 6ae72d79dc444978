"""Interventions fixtures (helpers live in ``interventions_fixtures.py``): one world per session — the Feast
online store, the MLflow registry with a small champion, the platform database — and the job's first run."""

from __future__ import annotations

import pytest
from interventions_fixtures import (
    NOW,
    SERVICE,
    World,
    seed_platform,
    train_champion,
    write_online_store,
)
from session_env import session_data_dir


@pytest.fixture(scope="session")
def interventions_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from threadpoolctl import threadpool_limits

    from features.api import feature_names
    from pipelines.interventions.api import InterventionPolicy, run_interventions

    with session_data_dir(tmp_path_factory.mktemp("interventions") / "var") as settings:
        with threadpool_limits(limits=1):  # OpenMP spin-waits badly on the shared 2 cores
            write_online_store(settings)
            train_champion(settings, feature_names(SERVICE))
        world = seed_platform(settings)
        summary = run_interventions(settings=settings, policy=InterventionPolicy(threshold=0.5), now=NOW,
                                    recommend=None)
        world.first_run = summary.to_dict()
        yield world
