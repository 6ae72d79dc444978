"""What a test does when a machine service it needs (PostgreSQL, Redis, NATS) is missing.

On this kind of machine the services are part of the machine, so in CI (``CI`` set) a missing one is a failure
with the reason: a skipped integration suite must not pass as green. Elsewhere (a laptop without them) the
test skips with the same reason.
"""

from __future__ import annotations

import os

import pytest


def service_missing(reason: str) -> None:
    """Fail in CI, skip elsewhere; never returns."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI requires the machine's services; see the machine page for start commands)")
    pytest.skip(reason)
