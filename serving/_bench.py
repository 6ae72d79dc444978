"""``learnloop bench serve``: one run, four servers, the same champion, wrk at concurrency 1 and 16.

Paths: (a) ``bentoml`` — our service (Feast-free online read + ONNX + prediction log); (b) ``mlflow`` —
``mlflow models serve`` on the champion's *native* scikit-learn pipeline, logged on the champion's run and named by
its ``native_model_uri`` version tag (features in the request body, ``dataframe_split``); (c) ``api`` — the platform
route ``GET /api/v1/users/{id}/risk`` end to end, reported as missing (with the reason) until that route exists;
(d) ``limit`` — plain FastAPI + uvicorn + ORT on the same ONNX file. Servers run one at a time on 127.0.0.1,
each is warmed up, then measured by ``wrk`` (C, epoll; a Python load client saturates 2 cores before the server).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnloop.errors import NotFound, Unavailable
from learnloop.settings import Settings

CONCURRENCY = (1, 16)
# The peer gets the thread policy ours has (ORT: one thread, no spinning): scikit-learn's HistGradientBoosting
# predicts through an OpenMP pool whose idle threads spin-wait; on single-row requests that cost ~10x the CPU of
# the prediction itself (86 ms vs ~12 ms CPU per request measured at c=1 on 2 shared cores).
MLFLOW_NATIVE_ENV = {"OMP_NUM_THREADS": "1"}
NATIVE_MODEL_TAG = "native_model_uri"  # set on each risk version by training (training._registry; not imported here)
_LUA = """wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class Target:
    name: str
    url: str  # the POST endpoint wrk hits
    body: str
    command: list[str]
    env: dict[str, str]
    ready_url: str
    expect: Callable[[bytes], bool]  # checks one answer before measuring (a server that errors is not measured)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms) and error counts from ``wrk --latency`` output."""
    def millis(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            raise Unavailable(f"wrk printed no {label}th percentile:\n{output}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if not rps or not total:
        raise Unavailable(f"cannot parse wrk output:\n{output}")
    return {"p50_ms": round(millis("50"), 3), "p99_ms": round(millis("99"), 3), "rps": round(float(rps.group(1)), 1),
            "requests": int(total.group(1)), "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": sum(int(x) for x in socket_errors.groups()) if socket_errors else 0}


def run_wrk(url: str, body: str, *, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(_LUA.format(body=body))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise Unavailable(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


def process_tree_cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants (workers, scoring server)."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, frontier = {root_pid}, {root_pid}
    while frontier:
        frontier = {pid for pid, (ppid, _) in stats.items() if ppid in frontier and pid not in tree}
        tree |= frontier
    return sum(stats[pid][1] for pid in tree if pid in stats) / os.sysconf("SC_CLK_TCK")


def _wait(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"server exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise Unavailable(f"server not ready at {url} within {timeout:.0f} s")


def _post(url: str, body: str) -> bytes:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _first_answer(target: Target, process: subprocess.Popen, *, timeout: float = 120.0) -> bytes:
    """The server's first answer, retried while it is still settling: on a loaded machine uvicorn's supervisor
    (``mlflow models serve`` runs uvicorn with several workers) kills and restarts a worker that misses its 5 s
    health check while another one is still importing torch, which drops the connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _post(target.url, target.body)
        except urllib.error.HTTPError as exc:
            raise Unavailable(f"{target.name} answered HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        except OSError as exc:  # refused, reset, closed without a response (URLError is an OSError)
            if process.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(f"{target.name} did not answer: {exc}") from exc
            time.sleep(1.0)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass


def measure(target: Target, *, seconds: float, warmup: float, workdir: Path, log: Callable[[str], None]
            ) -> dict[str, Any]:
    log(f"{target.name}: starting")
    log_file = open(workdir / f"{target.name}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(target.command, env=target.env, stdout=log_file, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        try:
            _wait(target.ready_url, process, timeout=240)
        except Unavailable as exc:
            tail = (workdir / f"{target.name}.log").read_text(errors="replace")[-400:]
            raise Unavailable(f"{exc}; log tail: {tail}") from exc
        answer = _first_answer(target, process)
        if not target.expect(answer):
            raise Unavailable(f"{target.name} answered unexpectedly: {answer[:300]!r}")
        run_wrk(target.url, target.body, connections=4, seconds=warmup, workdir=workdir)
        result = {}
        for connections in CONCURRENCY:
            log(f"{target.name}: c={connections}")
            cpu_before = process_tree_cpu_seconds(process.pid)
            row = run_wrk(target.url, target.body, connections=connections, seconds=seconds, workdir=workdir)
            # Server CPU per request: robust to a busy machine, where wall-clock latency mostly measures the queue
            # for a core.
            used = process_tree_cpu_seconds(process.pid) - cpu_before
            # A worker that exited (a server recycling or killing a timed-out worker) takes its CPU time with it:
            # then the figure is unknown, not negative.
            row["server_cpu_us_per_request"] = round(used / max(row["requests"], 1) * 1e6, 1) if used >= 0 else None
            result[f"c{connections}"] = row
        return result
    finally:
        _stop(process)
        log_file.close()


def _api_get_lua(token: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


def measure_api(settings: Settings, model_service: Target, *, student_id: int, course_id: str, seconds: float,
                warmup: float, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """(c) ``GET /api/v1/users/{id}/risk`` end to end: JWT auth, enrollment check, the RiskClient's HTTP call to
    our model service (online features + inference), the response. Seeds a fresh SQLite platform DB over HTTP
    (an admin, a learner linked to the bench registration, a course linked to its presentation, the enrollment)."""
    import uuid

    import httpx

    log("api: starting the model service and the platform API")
    service_log = open(workdir / "api-model.log", "wb")  # noqa: SIM115 - closed below
    service = subprocess.Popen(model_service.command, env=model_service.env, stdout=service_log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    port = _free_port()
    model_port = model_service.url.rsplit(":", 1)[1].split("/")[0]
    api_env = {**os.environ, "LEARNLOOP_DATA_DIR": str(settings.data_path), "LEARNLOOP_SERVING_PORT": model_port,
               "LEARNLOOP_SERVING_HOST": "127.0.0.1", "LEARNLOOP_RATE_LIMIT_PER_MINUTE": "100000000",
               "LEARNLOOP_DATABASE_URL": f"sqlite:///{workdir / 'platform.db'}"}
    api_log = open(workdir / "api.log", "wb")  # noqa: SIM115 - closed below
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "platform_api.main:app", "--host", "127.0.0.1", "--port",
                            str(port), "--log-level", "warning", "--no-access-log"], env=api_env, stdout=api_log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(model_service.ready_url, service, timeout=240)
        _wait(f"{base}/healthz", api, timeout=120)
        admin_email = f"bench-admin-{uuid.uuid4().hex[:6]}@example.org"
        subprocess.run([sys.executable, "-c", (
            "from platform_api.api import create_admin, open_session\n"
            f"with open_session() as s: create_admin(session=s, email='{admin_email}', name='Bench', "
            "password='bench-password')")], env=api_env, check=True, capture_output=True, timeout=120)
        with httpx.Client(base_url=base, timeout=30) as client:
            def login(email: str) -> dict[str, str]:
                answer = client.post("/api/v1/auth/login", json={"email": email, "password": "bench-password"})
                answer.raise_for_status()
                return {"Authorization": "Bearer " + answer.json()["access_token"]}

            admin = login(admin_email)
            learner_email = f"bench-learner-{uuid.uuid4().hex[:6]}@example.org"
            learner = client.post("/api/v1/users", headers=admin, json={
                "email": learner_email, "name": "Learner", "password": "bench-password"})
            learner.raise_for_status()
            learner_id = learner.json()["id"]
            client.put(f"/api/v1/users/{learner_id}", headers=admin,
                       json={"metadata": {"id_student": student_id}}).raise_for_status()
            course = client.post("/api/v1/courses", headers=admin, json={"title": f"Bench {course_id}"})
            course.raise_for_status()
            course_uuid = course.json()["id"]
            client.put(f"/api/v1/courses/{course_uuid}", headers=admin, json={
                "status": "published", "metadata": {"presentation": course_id}}).raise_for_status()
            learner_auth = login(learner_email)
            client.post(f"/api/v1/courses/{course_uuid}/enrollments", headers=learner_auth).raise_for_status()
            url = f"{base}/api/v1/users/{learner_id}/risk?course_id={course_uuid}"
            check = client.get(url, headers=learner_auth)
            if check.status_code != 200 or check.json().get("fallback") or check.json().get("risk_score") is None:
                raise Unavailable(f"the platform risk route answered {check.status_code}: {check.text[:300]}")
        token = learner_auth["Authorization"].split(" ", 1)[1]
        script = workdir / "api.lua"
        script.write_text(_api_get_lua(token))

        def wrk(connections: int, duration: float) -> dict[str, Any]:
            out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s",
                                  "--latency", "-s", str(script), url], capture_output=True, text=True,
                                 timeout=duration + 60)
            return parse_wrk(out.stdout)

        wrk(4, warmup)
        result = {}
        for connections in CONCURRENCY:
            log(f"api: c={connections}")
            cpu_before = process_tree_cpu_seconds(api.pid) + process_tree_cpu_seconds(service.pid)
            row = wrk(connections, seconds)
            used = process_tree_cpu_seconds(api.pid) + process_tree_cpu_seconds(service.pid) - cpu_before
            row["server_cpu_us_per_request"] = round(used / max(row["requests"], 1) * 1e6, 1)
            result[f"c{connections}"] = row
        return result
    except httpx.HTTPError as exc:
        raise Unavailable(f"seeding the platform API failed: {exc}") from exc
    finally:
        _stop(api)
        _stop(service)
        api_log.close()
        service_log.close()


def _essay_request(settings: Settings) -> tuple[int, str]:
    """A prompt with a trained grader and a median-length real essay of it (the bench's essay request)."""
    from grading_nlp.api import grade_essay
    from learnloop.datasets import load_essays

    try:
        essays = load_essays(settings.datasets_dir / "asap_aes" / "essays.tsv" if settings.datasets_dir else None)
    except Exception as exc:  # noqa: BLE001 - any reason the data set cannot be read: report the path as missing
        raise Unavailable(f"no ASAP essays to send ({type(exc).__name__}: {exc})") from exc
    for prompt in sorted(int(p) for p in essays["essay_set"].unique()):
        texts = essays.loc[essays["essay_set"] == prompt, "essay"].astype(str)
        text = texts.iloc[(texts.str.len() - texts.str.len().median()).abs().argmin()]
        if grade_essay(text, prompt, settings=settings).status.value == "suggested":
            return prompt, text
    raise Unavailable("no essay grader is trained in this data dir (`learnloop train essays`)")


def bench_essay(settings: Settings, *, seconds: float, warmup: float, workers: int, workdir: Path,
                log: Callable[[str], None]) -> dict[str, Any]:
    """(a) our service's ``/grade_essay`` vs (b) ``mlflow models serve`` on a MiniLM-on-torch pyfunc (built by
    ``grading_nlp._mlflow_pyfunc`` in its own process: torch never enters this one)."""
    from serving import _launch

    prompt, essay = _essay_request(settings)
    log(f"essay: building the MiniLM (torch) pyfunc for prompt {prompt}")
    model_dir = workdir / "essay-pyfunc"
    built = subprocess.run([sys.executable, "-m", "grading_nlp._mlflow_pyfunc", str(model_dir), "--prompt", str(prompt)],
                           capture_output=True, text=True, timeout=900,
                           env={**os.environ, "LEARNLOOP_DATA_DIR": str(settings.data_path), "HF_HUB_OFFLINE": "1"})
    if built.returncode != 0:
        raise Unavailable(f"building the essay pyfunc failed: {built.stderr.strip()[-400:]}")
    bin_dir = Path(sys.executable).parent
    base_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    port = _free_port()
    ours = Target("essay-bentoml", f"http://127.0.0.1:{port}/grade_essay",
                  json.dumps({"text": essay, "prompt_id": prompt}),
                  _launch.service_command(host="127.0.0.1", port=port),
                  _launch.service_env(settings, workers=workers), f"http://127.0.0.1:{port}/readyz",
                  lambda raw: b'"status":"suggested"' in raw)
    port = _free_port()
    theirs = Target("essay-mlflow", f"http://127.0.0.1:{port}/invocations",
                    json.dumps({"dataframe_records": [{"text": essay}]}),
                    [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
                     "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
                    base_env, f"http://127.0.0.1:{port}/ping", lambda raw: b"predictions" in raw)
    paths: dict[str, Any] = {}
    for name, target in (("bentoml", ours), ("mlflow", theirs)):
        try:
            paths[name] = measure(target, seconds=seconds, warmup=warmup, workdir=workdir, log=log)
        except Unavailable as exc:
            paths[name] = {"missing": True, "reason": str(exc)[:500]}
    a, b = paths["bentoml"], paths["mlflow"]
    both = "c16" in a and "c16" in b
    return {"paths": paths,
            "throughput_ratio_c16": round(a["c16"]["rps"] / b["c16"]["rps"], 3) if both and b["c16"]["rps"] else None,
            "p99_ratio_c16": round(a["c16"]["p99_ms"] / b["c16"]["p99_ms"], 3) if both and b["c16"]["p99_ms"] else None,
            "request": f"one real ASAP essay of prompt {prompt} ({len(essay)} characters, median length)",
            "mlflow_flavor": "pyfunc: sentence-transformers all-MiniLM-L6-v2 on torch (1 thread per worker) + "
                             "ridge head (grading_nlp._mlflow_pyfunc)",
            "ours": "grading_nlp.api.grade_essay behind /grade_essay (ONNX Runtime, torch-free)",
            "adaptive_batching": settings.serving_essay_batching}


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def bench_serve(settings: Settings, *, seconds: float = 10.0, warmup: float = 2.0, workers: int = 2,
                only: list[str] | None = None, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every path and return the issue's JSON (plus ``conditions``: load, cores, durations, versions)."""
    if shutil.which("wrk") is None:
        raise Unavailable("wrk is not installed: `apt-get install -y wrk` (Debian package)")
    from models.api import load_champion_onnx
    from models.data import ONNX_FILE, SCHEMA_FILE
    from serving import _launch
    from serving._online import OnlineFeatureReader
    from serving._scorer import FEAST_PROJECT, RISK_MODEL

    # download_artifacts resolves models:/ with the global registry URI (see _launch.service_env).
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = settings.mlflow_uri
    champion = load_champion_onnx(RISK_MODEL, settings=settings)
    reader = OnlineFeatureReader(db_path=settings.feast_dir / "online_store.db", project=FEAST_PROJECT,
                                 service=champion.schema.feature_service)
    student_id, course_id = _scored_registration(reader)
    filled = reader.fill(reader.read(student_id=student_id, course_id=course_id).values)
    by_name = dict(zip(reader.feature_names, filled.tolist(), strict=True))
    inputs = [item.name for item in champion.schema.inputs]
    model_inputs = [by_name[name] for name in inputs]  # NaN stays NaN (a JSON NaN token, as Python writes it)
    bin_dir = Path(sys.executable).parent
    # mlflow's scoring server runs `uvicorn` through bash: the venv's bin must be on PATH.
    base_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-", dir=settings.cache_dir))
    model_dir = workdir / "model"
    model_dir.mkdir()
    (model_dir / ONNX_FILE).write_bytes(champion.onnx_bytes)
    (model_dir / SCHEMA_FILE).write_text(json.dumps(champion.schema.to_dict()))

    def ok_json(key: str) -> Callable[[bytes], bool]:
        return lambda raw: key in raw.decode(errors="replace")

    targets: dict[str, Target] = {}
    port = _free_port()
    targets["bentoml"] = Target(
        "bentoml", f"http://127.0.0.1:{port}/predict_risk",
        json.dumps({"student_id": student_id, "course_id": course_id}),
        _launch.service_command(host="127.0.0.1", port=port),
        _launch.service_env(settings, workers=workers), f"http://127.0.0.1:{port}/readyz", ok_json('"status":"scored"'))
    port = _free_port()
    native_uri = native_model_uri(settings, champion.version)
    if native_uri:
        targets["mlflow"] = Target(
            "mlflow", f"http://127.0.0.1:{port}/invocations",
            native_request_body(champion.schema.inputs, model_inputs),
            [str(bin_dir / "mlflow"), "models", "serve", "-m", native_uri, "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
            {**base_env, **MLFLOW_NATIVE_ENV, "MLFLOW_TRACKING_URI": settings.mlflow_uri,
             "MLFLOW_REGISTRY_URI": settings.mlflow_uri},
            f"http://127.0.0.1:{port}/ping", ok_json("predictions"))
    port = _free_port()
    targets["limit"] = Target(
        "limit", f"http://127.0.0.1:{port}/predict", json.dumps({"features": model_inputs}),
        [str(bin_dir / "uvicorn"), "--factory", "serving._limit:create_app", "--host", "127.0.0.1", "--port",
         str(port), "--no-access-log", "--log-level", "warning", "--workers", str(workers)],
        {**base_env, "LEARNLOOP_BENCH_MODEL_DIR": str(model_dir)}, f"http://127.0.0.1:{port}/ping",
        ok_json("risk_score"))

    load_before = _loadavg()
    paths: dict[str, Any] = {}
    for name in ("bentoml", "mlflow", "api", "limit"):
        if only and name not in only:
            continue
        if name == "mlflow" and name not in targets:
            paths["mlflow"] = {"missing": True, "reason": (
                f"champion {RISK_MODEL} v{champion.version} has no native model logged ({NATIVE_MODEL_TAG} tag): "
                "retrain it with `learnloop train risk` and promote it")}
            continue
        if name == "api":
            try:
                paths["api"] = measure_api(settings, targets["bentoml"], student_id=student_id, course_id=course_id,
                                           seconds=seconds, warmup=warmup, workdir=workdir, log=log)
            except Unavailable as exc:
                paths["api"] = {"missing": True, "reason": str(exc)[:500]}
            continue
        try:
            paths[name] = measure(targets[name], seconds=seconds, warmup=warmup, workdir=workdir, log=log)
        except Unavailable as exc:
            paths[name] = {"missing": True, "reason": str(exc)[:500]}
    result: dict[str, Any] = {"paths": paths}
    if not only or "essay" in only:
        try:
            result["essay"] = bench_essay(settings, seconds=seconds, warmup=warmup, workers=workers, workdir=workdir,
                                          log=log)
        except (Unavailable, OSError, subprocess.SubprocessError) as exc:  # the risk figures are kept either way
            result["essay"] = {"missing": True, "reason": f"{type(exc).__name__}: {exc}"[:500]}
    a, b, d = paths.get("bentoml", {}), paths.get("mlflow", {}), paths.get("limit", {})

    def ratio(x: dict, y: dict, key: str) -> float | None:
        if "c16" in x and "c16" in y and y["c16"][key]:
            return round(x["c16"][key] / y["c16"][key], 3)
        return None

    result["throughput_ratio_c16"] = ratio(a, b, "rps")
    result["p99_ratio_c16"] = ratio(a, b, "p99_ms")
    result["limit_fraction_c16"] = ratio(a, d, "rps")
    result["conditions"] = {
        "loadavg_before": load_before, "loadavg_after": _loadavg(), "cpus": os.cpu_count(),
        "seconds_per_run": seconds, "load_generator": "wrk -t1 --latency, keep-alive, 127.0.0.1",
        "workers_per_server": workers,
        "mlflow_env": MLFLOW_NATIVE_ENV,
        "model": f"{RISK_MODEL} v{champion.version} ({len(inputs)} inputs, FeatureService "
                 f"{champion.schema.feature_service})",
        "mlflow_flavor": (f"the champion's native scikit-learn pipeline ({native_uri}, logged on the champion's "
                          "run; pyfunc predict_proba, dataframe_split body)") if native_uri else
                         "missing: the champion has no native model logged",
        "request": f"student {student_id} in {course_id}; bentoml reads its features online, mlflow/limit get "
                   "them in the body",
    }
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def native_model_uri(settings: Settings, version: str) -> str | None:
    """The URI of the native model logged with a registered risk version (training tags it), or None."""
    from models.api import mlflow_client
    from serving._scorer import RISK_MODEL

    return mlflow_client(settings).get_model_version(RISK_MODEL, version).tags.get(NATIVE_MODEL_TAG) or None


def native_request_body(inputs, values: list[float]) -> str:
    """The ``mlflow models serve`` body for the champion's native model: one ``dataframe_split`` row with the
    schema's feature names (its pipeline selects columns by name), numerics as numbers (NaN as JSON's NaN token,
    which MLflow's parser accepts), categoricals as the labels ``models.api.model_frame`` gives them."""
    import math

    from models.data import MISSING_CATEGORY, InputKind

    row: list[Any] = []
    for item, value in zip(inputs, values, strict=True):
        if item.kind is InputKind.numeric:
            row.append(float(value))
        else:
            row.append(MISSING_CATEGORY if value is None or (isinstance(value, float) and math.isnan(value))
                       else f"{value:g}" if isinstance(value, float) else str(value))
    return json.dumps({"dataframe_split": {"columns": [item.name for item in inputs], "data": [row]}})


def _scored_registration(reader) -> tuple[int, str]:
    """A registration the online store holds features for (the bench's request)."""
    import sqlite3

    from serving._online import serialize_entity_key

    view = next((v for v in reader.views if v.join_key == "student_course"), None)
    if view is None:
        raise NotFound(f"{reader.service} has no registration-keyed view to pick a request from")
    with sqlite3.connect(reader.uri, uri=True) as conn:
        for (key,) in conn.execute(f'SELECT DISTINCT entity_key FROM "{view.table}" LIMIT 200'):
            tail = key[4 + 8 + len(b"student_course") + 8:].decode(errors="replace")
            student, _, course = tail.partition(":")
            if student.isdigit() and course and serialize_entity_key("student_course", tail) == key:
                found = reader.read(student_id=int(student), course_id=course).views_found
                if len(found) == len(reader.views):
                    return int(student), course
    raise NotFound("no registration with every feature view in the online store; materialize features first")
