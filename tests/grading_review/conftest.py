"""Grading review fixtures: one tiny essay grader trained per session, a fresh platform database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from grading_review_fixtures import Api, make_app, platform_settings, train_tiny_grader

from learnloop.settings import Settings


@pytest.fixture(scope="session")
def grader_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_grader(tmp_path_factory.mktemp("grading-review-model"))


@pytest.fixture
def review_settings(grader_data_dir: Path, tmp_path: Path) -> Settings:
    """The trained grader's data dir with a database of this test's own."""
    return platform_settings(grader_data_dir, tmp_path / "platform.db")


@pytest.fixture
def api(review_settings: Settings) -> Iterator[Api]:
    app, _ = make_app(review_settings)
    with TestClient(app) as client:
        yield Api(client)
