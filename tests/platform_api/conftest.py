"""Platform API fixtures: the whole suite runs on SQLite and on PostgreSQL (a fresh schema per run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from platform_fixtures import BACKENDS, Platform, fresh_database_url, start_platform


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    yield from fresh_database_url(request.param, tmp_path_factory.mktemp(f"db-{request.param}"))


@pytest.fixture(scope="session")
def platform(database_url, tmp_path_factory) -> Iterator[Platform]:
    yield from start_platform(database_url, tmp_path_factory.mktemp("platform-data"))
