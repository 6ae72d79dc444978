"""A data dir for a session-scoped test world: ``LEARNLOOP_DATA_DIR``/``LEARNLOOP_ENV`` set while it lives, the
previous values (and the settings cache) restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from learnloop.settings import Settings, get_settings


@contextmanager
def session_data_dir(data_dir: Path) -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEARNLOOP_DATA_DIR", str(data_dir))
        patch.setenv("LEARNLOOP_ENV", "test")
        get_settings.cache_clear()
        settings = get_settings()
        settings.ensure_dirs()
        try:
            yield settings
        finally:
            get_settings.cache_clear()
