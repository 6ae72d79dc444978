"""Serving fixtures (helpers and constants live in ``serving_fixtures.py``)."""

from __future__ import annotations

import pytest
from serving_fixtures import (
    SERVICE,
    RunningService,
    ServingWorld,
    free_port,
    register_and_promote,
    write_online_store,
)
from session_env import session_data_dir


@pytest.fixture(scope="session")
def serving_world(tmp_path_factory: pytest.TempPathFactory) -> ServingWorld:
    from features import api as features_api

    with session_data_dir(tmp_path_factory.mktemp("serving") / "var") as settings:
        store = features_api.get_store(settings)
        full = write_online_store(store)
        names = features_api.feature_names(SERVICE)
        register_and_promote(settings, names, seed=1)
        yield ServingWorld(settings=settings, feature_names=names, full_features=full)


@pytest.fixture(scope="session")
def model_service(serving_world: ServingWorld, tmp_path_factory: pytest.TempPathFactory) -> RunningService:
    from serving.api import start_model_service, stop_model_service, wait_until_ready

    port = free_port()
    log_path = tmp_path_factory.mktemp("service-log") / "service.log"
    process = start_model_service(settings=serving_world.settings, port=port, poll_seconds=0.5, log_path=log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=180, process=process)
    except Exception:
        stop_model_service(process)
        print(log_path.read_text()[-4000:])
        raise
    yield RunningService(url=url, process=process, log_path=log_path)
    stop_model_service(process)
