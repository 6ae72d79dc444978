"""What the browser tests share: an app served by uvicorn on 127.0.0.1 in a thread, and headless Chromium.

Imported by name (``from browser_support import served, launch_chromium``) like ``service_checks``: ``tests/``
is on ``sys.path`` and test folders never import each other's conftest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
BROWSER = [pytest.mark.browser,
           pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium (apt-get install -y chromium)")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(app, *, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread (its lifespan runs: relay, workers); yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, f"uvicorn did not start within {timeout:.0f} s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def launch_chromium(playwright):
    """Headless Debian Chromium, quiet (no background networking, updates or first-run work)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"])
