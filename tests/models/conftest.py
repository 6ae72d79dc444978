"""Model tests run single-threaded: OpenMP learners spin-wait badly when the 2 cores are shared (a 0.3 s
HistGradientBoosting fit took 31 s with two threads under load)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_math():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
