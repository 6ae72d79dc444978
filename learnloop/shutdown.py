"""Stopping long-running commands the way people and service managers do."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a container or service manager stopping a command) ends it like Ctrl-C does, so the
    services it started in sessions of their own (the model service, the platform API) are stopped too rather than
    left serving. A second SIGTERM during that cleanup is ignored, so it cannot cut the shutdown short."""
    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
