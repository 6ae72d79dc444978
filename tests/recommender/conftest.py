"""Fixtures for search and recommendation tests: one ONNX export per session, a fresh index per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from learnloop.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def exported_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 ONNX export of MiniLM, made once per session (shared with tests/models when both run)."""
    from models.text_embedding import export_text_embedding_onnx, onnx_dir

    shared = Settings(data_dir=tmp_path_factory.getbasetemp() / "shared-embedder-var")
    export_text_embedding_onnx(shared)
    return onnx_dir(shared)


@pytest.fixture
def search_settings(settings: Settings, exported_embedder_dir: Path) -> Settings:
    """A fresh data dir whose cache links to the session's ONNX export; the index is closed afterwards."""
    from recommender.api import close_search_index

    link = settings.cache_dir / "onnx" / exported_embedder_dir.name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(exported_embedder_dir, target_is_directory=True)
    yield settings
    close_search_index(settings)
