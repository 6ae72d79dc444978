"""Fixtures for the pipelines: offline sources built from the small synthetic OULAD of tests/features."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "features_test_synthetic", Path(__file__).parents[1] / "features" / "conftest.py")
_synthetic = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _synthetic
_spec.loader.exec_module(_synthetic)
synthetic_oulad = _synthetic.synthetic_oulad


@pytest.fixture
def oulad_offline(settings):
    """``settings`` with parquet sources built from synthetic OULAD tables (no Feast involved)."""
    from pipelines.api import build_offline

    tables = synthetic_oulad(n_students=12, seed=4)
    build_offline(tables=tables, settings=settings)
    return settings, tables
