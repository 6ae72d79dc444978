"""Load measurement of the API with `wrk` against a uvicorn server on 127.0.0.1 (bounded duration)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from learnloop.errors import Unavailable
from learnloop.settings import Settings

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return round(float(match.group(1)) * _UNIT[match.group(2)], 3)


def parse_wrk(output: str) -> dict[str, float]:
    """p50/p99 (ms), requests/s, and error counts from ``wrk --latency`` output."""
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, flags=re.MULTILINE))
    if not {"50", "90", "99"} <= set(percentiles):
        raise Unavailable(f"wrk reported no latency distribution (server down?):\n{output[-1500:]}")
    total = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {"p50_ms": _ms(percentiles["50"]), "p90_ms": _ms(percentiles["90"]), "p99_ms": _ms(percentiles["99"]),
            "requests": int(total.group(1)) if total else 0, "requests_per_s": float(rps.group(1)) if rps else 0.0,
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0}


def _cpu_seconds(pid: int) -> float:
    """User+system CPU the server process used so far (load-independent cost per request)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(server_pid: int, url: str, **kwargs) -> dict:
    before = _cpu_seconds(server_pid)
    figures = _wrk(url, **kwargs)
    used = _cpu_seconds(server_pid) - before
    figures["server_cpu_ms_per_request"] = round(1000 * used / max(figures["requests"], 1), 2)
    return figures


def _wrk(url: str, *, token: str, concurrency: int, duration_s: int, threads: int, body: dict | None) -> dict:
    script = f'wrk.headers["Authorization"] = "Bearer {token}"\nwrk.headers["Content-Type"] = "application/json"\n'
    if body is not None:
        script += f'wrk.method = "POST"\nwrk.body = [[{json.dumps(body)}]]\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        result = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration_s}s", "--latency",
                                 "-s", handle.name, url], capture_output=True, text=True, timeout=duration_s + 60,
                                check=True)
    finally:
        os.unlink(handle.name)
    return parse_wrk(result.stdout)


def run_api_bench(*, settings: Settings, concurrency: int = 16, duration_s: int = 10, threads: int = 2) -> dict:
    """Start the API (fresh SQLite or the configured DB), seed one course and learner, then measure
    ``GET /api/v1/courses/{id}`` and ``POST /api/v1/events`` with wrk at ``concurrency``."""
    if shutil.which("wrk") is None:
        raise Unavailable("wrk is not installed; `apt-get install -y wrk` and retry")
    port = _free_port()
    env = {**os.environ, "LEARNLOOP_DATA_DIR": str(settings.data_path),
           "LEARNLOOP_RATE_LIMIT_PER_MINUTE": "100000000"}
    if settings.database_url is None:
        bench_db = Path(settings.data_path) / f"bench-{uuid.uuid4().hex[:8]}.db"
        env["LEARNLOOP_DATABASE_URL"] = f"sqlite:///{bench_db}"
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "platform_api.main:app", "--host", "127.0.0.1",
                               "--port", str(port), "--log-level", "warning", "--no-access-log"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise Unavailable("the API server did not start within 60 s")
                time.sleep(0.2)
            admin_email = f"bench-admin-{uuid.uuid4().hex[:6]}@example.org"
            subprocess.run([sys.executable, "-c", (
                "from platform_api.api import create_admin, open_session\n"
                f"with open_session() as s: create_admin(session=s, email='{admin_email}', name='Bench', "
                "password='bench-password')")], env=env, check=True)
            admin = {"Authorization": "Bearer " + client.post("/api/v1/auth/login", json={
                "email": admin_email, "password": "bench-password"}).json()["access_token"]}
            learner_email = f"bench-learner-{uuid.uuid4().hex[:6]}@example.org"
            client.post("/api/v1/users", headers=admin, json={"email": learner_email, "name": "Learner",
                                                              "password": "bench-password"}).raise_for_status()
            course = client.post("/api/v1/courses", headers=admin, json={"title": "Bench course"}).json()
            client.put(f"/api/v1/courses/{course['id']}", headers=admin, json={"status": "published"})
            token = client.post("/api/v1/auth/login", json={"email": learner_email, "password": "bench-password"}
                                ).json()["access_token"]
            client.post(f"/api/v1/courses/{course['id']}/enrollments",
                        headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        get_course = _measure(server.pid, f"{base}/api/v1/courses/{course['id']}", token=token, concurrency=concurrency,
                          duration_s=duration_s, threads=threads, body=None)
        post_event = _measure(server.pid, f"{base}/api/v1/events", token=token, concurrency=concurrency, duration_s=duration_s,
                          threads=threads, body={"event_type": "page_view", "course_id": course["id"],
                                                 "session_id": "bench", "payload": {"page": "intro"}})
        backend = "postgresql" if env.get("LEARNLOOP_DATABASE_URL", "").startswith("postgresql") else "sqlite"
        return {"tool": "wrk", "concurrency": concurrency, "duration_s": duration_s, "database": backend,
                "workers": 1, "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                "get_course": get_course, "post_event": post_event}
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
