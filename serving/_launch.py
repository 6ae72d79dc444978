"""Start the model service as a subprocess (``bentoml serve``) and wait until it is ready."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from learnloop.errors import Conflict, Unavailable
from learnloop.settings import Settings

SERVICE_TARGET = "serving._service:LearnloopModels"
SERVICE_NAME = "learnloop_models"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def service_env(settings: Settings, *, workers: int, poll_seconds: float | None = None) -> dict[str, str]:
    """Environment of the service process: settings passed down, BentoML kept under the data dir and quiet."""
    settings.ensure_dirs()
    env = dict(os.environ)
    env.update({
        "LEARNLOOP_DATA_DIR": str(settings.data_path),
        "BENTOML_HOME": str(settings.bentoml_home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        # mlflow.artifacts.download_artifacts resolves models:/ URIs with the *global* registry URI, whatever
        # registry_uri it is given (MLflow 3.17): pin it for the whole process.
        "MLFLOW_TRACKING_URI": settings.mlflow_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow_uri,
        # Service-level override of the decorator's worker count (BentoML's documented config override).
        "BENTOML_CONFIG_OPTIONS": f"services.{SERVICE_NAME}.workers={int(workers)}",
    })
    if poll_seconds is not None:
        env["LEARNLOOP_SERVING_POLL_SECONDS"] = str(poll_seconds)
    return env


def service_command(*, host: str, port: int) -> list[str]:
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    return [str(bentoml_cli), "serve", SERVICE_TARGET, "--host", host, "--port", str(port),
            "--working-dir", str(_REPO_ROOT)]


def start(settings: Settings, *, host: str, port: int, workers: int = 1, poll_seconds: float | None = None,
          log_path: Path | None = None) -> subprocess.Popen:
    """Start the service in its own process group (so stopping it stops its workers too). The address must be
    free: with another server there, the readiness check would get that server's answers."""
    require_free(host, port)
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(service_command(host=host, port=port),
                            env=service_env(settings, workers=workers, poll_seconds=poll_seconds),
                            stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=_REPO_ROOT)


def require_free(host: str, port: int, *, how_to_change: str = "--port, or LEARNLOOP_SERVING_PORT") -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no owner
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise Conflict(f"{host}:{port} is already in use ({exc.strerror}): stop what listens there, or choose "
                           f"another port ({how_to_change})") from None


def wait_ready(url: str, *, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    """Block until ``GET {url}/readyz`` answers 200 (champion loaded); raise Unavailable on timeout/exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise Unavailable(f"the model service exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise Unavailable(f"the model service at {url} was not ready within {timeout:.0f} s (is there a champion?)")


def stop(process: subprocess.Popen, *, timeout: float = 20.0) -> None:
    """SIGTERM the service's process group, SIGKILL it if it does not exit in time."""
    import signal

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass
