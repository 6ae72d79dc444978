"""Stopping long-running commands the way people and service managers do."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_stop = threading.Event()


def stop_requested() -> bool:
    """Whether SIGTERM arrived inside :func:`sigterm_as_interrupt`. Loops that wait for their services check it: the
    KeyboardInterrupt the handler raises can be lost (Python may run the handler inside a finalizer, whose
    exceptions are only reported), and a lost one left `learnloop demo` serving after `kill`."""
    return _stop.is_set()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a container or service manager stopping a command) ends it like Ctrl-C does, so the
    services it started in sessions of their own (the model service, the platform API) are stopped too rather than
    left serving. A second SIGTERM during that cleanup is ignored, so it cannot cut the shutdown short."""
    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop.set()
        raise KeyboardInterrupt

    _stop.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
