from __future__ import annotations

from pathlib import Path

import pytest

from learnloop.datasets import write_synthetic


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic data root in the real data's layout, generated once per test session."""
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root)
    return root
