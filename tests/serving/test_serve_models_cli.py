"""`learnloop serve models` as an operator runs it: a failed start is an error with its cause, and SIGTERM (what
kill, systemd or docker send) stops the model server it started, not only the command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "LEARNLOOP_DATA_DIR": str(tmp_path / "var"), "HF_HUB_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_model_service_that_cannot_start_is_an_error_that_says_why(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "learnloop.cli", "serve", "models", "--port", str(port)],
                                capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "error:" in result.stderr and "Address already in use" in result.stderr
    # Refused before starting anything: with another model service there, readiness would get its answers.
    assert "choose another port (--port, or LEARNLOOP_SERVING_PORT)" in result.stderr


@pytest.mark.timeout(300)
def test_sigterm_stops_the_model_server_too(tmp_path):
    port = _free_port()
    command = subprocess.Popen([sys.executable, "-m", "learnloop.cli", "serve", "models", "--port", str(port),
                                "--workers", "1"], env=_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/livez"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert command.poll() is None, command.communicate()[1][-2000:]
        time.sleep(1)
    else:
        command.kill()
        pytest.fail("the model service did not start")
    command.send_signal(signal.SIGTERM)
    command.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
        except httpx.HTTPError:
            return  # nothing answers on the port: the server went with the command
        time.sleep(0.5)
    pytest.fail(f"the model server still answers on port {port} after the command got SIGTERM")
