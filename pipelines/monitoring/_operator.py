"""The operator page: models with their aliases and versions, what the model service serves of each, latest drift
status with links to the Evidently reports, prediction volume and latency, retraining runs and operator alerts.
Server-rendered (jinja2); the route only gathers the view model and renders it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from learnloop.errors import LearnloopError
from learnloop.settings import Settings, get_settings
from pipelines.monitoring import _state
from pipelines.monitoring._metrics import MonitoringCollector
from pipelines.monitoring._prediction_log import read_heads
from pipelines.monitoring.data import ModelStatus

_REPORT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
VOLUME_DAYS = 7  # the page's prediction volume/latency window (the log grows without bound)


def _environment() -> Environment:
    return Environment(loader=PackageLoader("pipelines.monitoring", "templates"),
                       autoescape=select_autoescape(["html"]))


def operator_view(*, settings: Settings, list_models: Callable[[], list[ModelStatus]] | None,
                  report_url: Callable[[Path], str | None], now: datetime | None = None,
                  services: Callable[[], list[dict[str, Any]]] | None = None,
                  served: Callable[[], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Everything the page shows, as plain data (also served as JSON). ``services``: the health rows of the
    platform's parts (``{"name", "status", "detail", "figures"}``), given by the process that mounts the page.
    ``served``: what the model service serves, one dict per model (``serving.api.ServedModel``); it raises
    ``LearnloopError`` when the service does not answer, which the page shows instead of the column."""
    now = now or datetime.now(UTC)
    served_models: list[dict[str, Any]] = []
    served_error = None
    if served is not None:
        try:
            served_models = served()
        except LearnloopError as exc:
            served_error = exc.message
    state = _state.read_state(settings.data_path)
    if list_models is not None:
        models = [{"name": m.name, "aliases": m.aliases, "versions": m.latest_versions} for m in list_models()]
        registry_at = now.isoformat(timespec="seconds")
    else:  # the snapshot taken by the last `learnloop drift check` (this process may not reach the registry)
        registry = state.get("registry") or {}
        models = registry.get("models", [])
        registry_at = registry.get("at")
    predictions = read_heads(settings.data_path, since=now - timedelta(days=VOLUME_DAYS))
    volume = _volume(predictions, now)
    checks = state.get("checks", {})  # how each model's latest check ended (a failure keeps the last report)
    served_by_name = {m["name"]: m for m in served_models}
    names = sorted({m["name"] for m in models} | set(state.get("models", {})) | set(checks) | set(volume)
                   | set(served_by_name))
    by_name = {m["name"]: m for m in models}
    rows = []
    for name in names:
        drift = state.get("models", {}).get(name)
        if drift is not None:
            drift = {**drift, "report_html_url": report_url(Path(drift["report_html"])),
                     "report_json_url": report_url(Path(drift["report_json"]))}
        rows.append({"name": name, "in_registry_view": name in by_name,
                     "aliases": by_name.get(name, {}).get("aliases", {}),
                     "versions": by_name.get(name, {}).get("versions", []), "drift": drift,
                     "check": checks.get(name), "served": served_by_name.get(name),
                     "predictions": volume.get(name)})
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "services": services() if services is not None else [],
        "registry_at": registry_at,
        "served_checked": served is not None,
        "served_error": served_error,
        "models": rows,
        "retraining": list(reversed(_state.read_lines(settings.data_path, _state.RETRAIN_LOG)))[:20],
        "alerts": list(reversed(_state.read_lines(settings.data_path, _state.ALERTS_FILE)))[:20],
        "counters": state.get("counters", {}),
    }


def _volume(frame, now: datetime) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if frame.empty:
        return out
    for model, rows in frame.groupby("model_name", sort=True):
        recent = rows[rows["ts"] >= now - timedelta(hours=24)]
        latency = rows["latency_ms"].dropna().to_numpy()
        out[model] = {
            "last_7d": len(rows), "last_24h": len(recent),
            "versions": sorted({str(v) for v in rows["model_version"].dropna()}),
            "latency_ms": None if not len(latency) else {
                q: round(float(np.percentile(latency, p)), 2) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))},
            "last_at": rows["ts"].max().isoformat(timespec="seconds"),
        }
    return out


def operator_router(*, settings: Settings | None = None, list_models: Callable[[], list[ModelStatus]] | None = None,
                    prefix: str = "/operator",
                    services: Callable[[], list[dict[str, Any]]] | None = None,
                    served: Callable[[], list[dict[str, Any]]] | None = None) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=["operator"])
    template = _environment().get_template("operator.html")
    collectors: dict[Path, CollectorRegistry] = {}

    def current() -> Settings:
        return settings or get_settings()

    def report_url(path: Path) -> str | None:
        reports = current().reports_dir.resolve()
        try:
            relative = path.resolve().relative_to(reports / "drift")
        except ValueError:
            return None
        return f"{prefix}/reports/{relative.as_posix()}"

    @router.get("", response_class=HTMLResponse, summary="Operator page: models, drift, predictions")
    def page() -> HTMLResponse:
        view = operator_view(settings=current(), list_models=list_models, report_url=report_url, services=services,
                             served=served)
        return HTMLResponse(template.render(prefix=prefix, **view))

    @router.get("/status", summary="The operator page's data as JSON")
    def status() -> JSONResponse:
        return JSONResponse(operator_view(settings=current(), list_models=list_models, report_url=report_url,
                                          services=services, served=served))

    @router.get("/reports/{model}/{file_name}", summary="A saved Evidently drift report (HTML or JSON)")
    def report(model: str, file_name: str) -> FileResponse:
        if not (_REPORT_NAME.match(model) and _REPORT_NAME.match(file_name)) or file_name.startswith("."):
            raise HTTPException(status_code=404, detail="no such report")
        path = current().reports_dir / "drift" / model / file_name
        if path.suffix not in (".html", ".json") or not path.is_file():
            raise HTTPException(status_code=404, detail="no such report")
        return FileResponse(path)

    # The Prometheus text format, and so in the OpenAPI too (not the default application/json).
    @router.get("/metrics", summary="Prometheus metrics of drift checks, retraining and predictions",
                response_class=PlainTextResponse,
                responses={200: {"description": f"Prometheus text exposition format ({CONTENT_TYPE_LATEST})"}})
    def metrics() -> Response:
        data_path = current().data_path
        registry = collectors.get(data_path)
        if registry is None:
            registry = collectors[data_path] = CollectorRegistry(auto_describe=False)
            registry.register(MonitoringCollector(data_path))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
