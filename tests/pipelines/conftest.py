"""Fixtures for the pipelines: offline sources built from the small synthetic OULAD of tests/features."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _feature_fixtures():
    # Loaded by path under its own name (tests/features is not a package; conftest names collide).
    if "feature_fixtures" in sys.modules:
        return sys.modules["feature_fixtures"]
    spec = importlib.util.spec_from_file_location(
        "feature_fixtures", Path(__file__).parents[1] / "features" / "feature_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


synthetic_oulad = _feature_fixtures().synthetic_oulad


@pytest.fixture
def oulad_offline(settings):
    """``settings`` with parquet sources built from synthetic OULAD tables (no Feast involved)."""
    from pipelines.api import build_offline

    tables = synthetic_oulad(n_students=12, seed=4)
    build_offline(tables=tables, settings=settings)
    return settings, tables
