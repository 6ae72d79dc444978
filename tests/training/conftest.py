"""Fixtures for training tests: a fresh MLflow registry per test without paying its ~15 s schema migration."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from learnloop.settings import Settings


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_math():
    # OpenMP learners spin-wait badly when the 2 cores are shared (0.3 s fit → 31 s under load).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def registry_settings(settings: Settings, _migrated_mlflow_db: Path) -> Settings:
    """``settings`` whose sqlite MLflow store already has its tables (copied from a migrated template)."""
    target = settings.data_path / "mlflow.db"
    assert settings.mlflow_uri == f"sqlite:///{target}"
    shutil.copyfile(_migrated_mlflow_db, target)
    return settings


@pytest.fixture(scope="session")
def synthetic_risk_frame():
    """``synthetic_risk_frame(students_per_course=120, seed=0)`` → a frame shaped like the risk training set."""
    from training.api import synthetic_risk_frame as build

    return build
