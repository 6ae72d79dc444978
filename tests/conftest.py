"""Shared fixtures: every test runs against its own data dir; real data sets skip cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from learnloop.settings import Settings, get_settings

# Keep third-party services quiet and offline in every test process.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing at a fresh data dir under tmp_path (env vars set, cache cleared)."""
    monkeypatch.setenv("LEARNLOOP_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LEARNLOOP_ENV", "test")
    get_settings.cache_clear()
    current = get_settings()
    current.ensure_dirs()
    yield current
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def real_datasets_dir() -> Path:
    """The shared real data (../shared/data or LEARNLOOP_DATASETS_DIR); skips with a reason when absent."""
    found = Settings().datasets_dir
    if found is None or not Path(found).is_dir():
        pytest.skip("real data sets not found: set LEARNLOOP_DATASETS_DIR or place them in ../shared/data")
    return Path(found)
