"""Session fixtures for the feature store: the synthetic OULAD tables and one embedded Feast store built from them."""

from __future__ import annotations

import pytest
from feature_fixtures import BuiltStore, build_store, synthetic_oulad

from learnloop.datasets import OuladTables
from learnloop.settings import Settings


@pytest.fixture(scope="session")
def oulad() -> OuladTables:
    return synthetic_oulad()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, oulad: OuladTables) -> BuiltStore:
    """The embedded store (parquet/duckdb offline, SQLite online, sqlite SQL registry), built and materialized."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("feast-embedded") / "var")
    settings.ensure_dirs()
    return build_store(settings, oulad)
