"""Stand-ins for a service that is down, for the tests of what degrades when one is: a port nothing listens on
(connection refused at once) and a server that accepts connections and never answers (a hung process, a
blackholed proxy: every call waits for its timeout), and a real server of our own (redis-server, nats-server) to
stop and start again.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest


def start_server(command: list[str], port: int, name: str, *, timeout_s: float = 10.0) -> subprocess.Popen:
    """Run ``command`` (a server that will listen on 127.0.0.1:``port``) and return once it accepts connections;
    fail the test when it does not within ``timeout_s``."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"{name} did not start")


def closed_port() -> int:
    """A local port nothing listens on (bound once to find a free one, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; ``connections`` counts them.

    Use as a context manager; ``url(scheme)`` is its address (e.g. ``redis://127.0.0.1:<port>/0``)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._held.append(conn)  # kept open and unanswered until the server stops

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()
