"""The model service: one BentoML service that serves every ``@champion`` ONNX model of the registry.

Run it with ``learnloop serve models`` (``bentoml serve serving._service:LearnloopModels`` underneath).

Why it is configured the way it is (each measured with wrk, see README "Performance"):

* **async APIs** — a sync API hops every request to a thread pool capped at ``threads`` (default 1); the hop
  and the GIL hand-back cost more than the ~30 µs ONNX run it protects. Our handlers never wait on I/O longer
  than a local SQLite read, so they run on the event loop.
* **no per-request tracing** — BentoML wraps every request in OpenTelemetry's ASGI middleware (five spans a
  request even when nothing is exported); the prediction routes are excluded from it.
* **no BentoML access log / request metrics on the hot path** — every prediction is already logged with its
  latency to the prediction log (asynchronously), which monitoring turns into Prometheus metrics.
* **ORT single-threaded, no spinning** (``_scorer.ort_session``).
* **GC**: startup objects are frozen out of the collector so full collections stay short.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import Annotated

import bentoml
from pydantic import BaseModel, Field

from learnloop.errors import NotFound, Unavailable
from learnloop.settings import get_settings
from serving._plog import PredictionLog
from serving._scorer import RISK_MODEL, ChampionWatcher, RiskRefused
from serving.data import PredictionStatus

log = logging.getLogger(__name__)

HOT_ROUTES = ["/predict_risk"]


class RiskResponse(BaseModel):
    """The answer of ``/predict_risk``: a score, or (HTTP 404/503) the reason there is none."""

    student_id: int
    course_id: str
    risk_score: float | None = Field(None, ge=0.0, le=1.0, description="P(withdraw or fail); null when refused")
    status: str = Field(description="scored | cold_start | refused | unavailable")
    model_name: str = RISK_MODEL
    model_version: str | None = None
    reason: str | None = Field(None, description="why cold start / refused / unavailable (machine code for refused)")
    detail: str | None = None
    latency_ms: float | None = None


class ModelsResponse(BaseModel):
    versions: dict[str, str | None]
    errors: dict[str, str]
    forbidden_modules_loaded: list[str] = Field(default_factory=list,
                                                description="heavy modules this worker must never import")


FORBIDDEN_MODULES = ("torch", "feast", "training", "pipelines", "sentence_transformers")


def _forbidden_loaded() -> list[str]:
    return sorted(name for name in FORBIDDEN_MODULES if name in sys.modules)


@bentoml.service(
    name="learnloop_models",
    workers=1,
    traffic={"timeout": 10},
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": HOT_ROUTES},
)
class LearnloopModels:
    """Loads each model's champion from the MLflow registry at startup and follows the alias."""

    def __init__(self) -> None:
        settings = get_settings()
        self.settings = settings
        self.watcher = ChampionWatcher(settings=settings)
        self.watcher.start()
        self.prediction_log = PredictionLog(settings.data_path)
        # Everything allocated so far lives as long as the process: keep it out of every future collection.
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return RISK_MODEL in self.watcher.models

    @bentoml.api(route="/predict_risk")
    async def predict_risk(
        self,
        student_id: Annotated[int, Field(ge=0, description="OULAD id_student / platform learner id")],
        course_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:.\-]+$",
                                        description="module-presentation, e.g. AAA-2013J")],
        ctx: bentoml.Context,
    ) -> RiskResponse:
        """Risk that the student withdraws or fails ``course_id``, from the champion and online features."""
        started = time.perf_counter()
        model = self.watcher.models.get(RISK_MODEL)  # read once: a concurrent swap cannot split a request
        if model is None:
            ctx.response.status_code = 503
            return RiskResponse(student_id=student_id, course_id=course_id, status=PredictionStatus.unavailable,
                                reason="no_champion",
                                detail=self.watcher.last_error.get(RISK_MODEL, "no champion loaded yet"))
        try:
            result = model.score(student_id=student_id, course_id=course_id)
        except RiskRefused as exc:
            ctx.response.status_code = 404
            return RiskResponse(student_id=student_id, course_id=course_id, status="refused",
                                model_version=model.version, reason=exc.code.value, detail=str(exc))
        except (Unavailable, NotFound) as exc:
            ctx.response.status_code = 503
            return RiskResponse(student_id=student_id, course_id=course_id, status=PredictionStatus.unavailable,
                                model_version=model.version, reason="feature_store", detail=str(exc))
        latency_ms = (time.perf_counter() - started) * 1000
        self.prediction_log.record(
            model_name=RISK_MODEL, model_version=result.model_version,
            entity={"student_course": f"{student_id}:{course_id}", "id_student": student_id, "course": course_id},
            feature_names=model.reader.feature_names, features=result.features,
            output={"risk_score": result.risk_score, "status": result.status.value}, latency_ms=latency_ms)
        return RiskResponse(student_id=student_id, course_id=course_id, risk_score=result.risk_score,
                            status=result.status, model_version=result.model_version, reason=result.reason,
                            latency_ms=round(latency_ms, 3))

    @bentoml.api(route="/admin/reload")
    async def reload(self) -> ModelsResponse:
        """Operator hook: check every alias now and swap what moved (the poll does this every few seconds)."""
        versions = await asyncio.to_thread(self.watcher.check)
        return ModelsResponse(versions=versions, errors=dict(self.watcher.last_error),
                              forbidden_modules_loaded=_forbidden_loaded())

    @bentoml.api(route="/admin/models")
    async def models(self) -> ModelsResponse:
        """Which version of each model this worker serves."""
        return ModelsResponse(versions={name: (m.version if (m := self.watcher.models.get(name)) else None)
                                        for name in self.watcher.model_names},
                              errors=dict(self.watcher.last_error), forbidden_modules_loaded=_forbidden_loaded())

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.watcher.stop()
        self.prediction_log.close()
