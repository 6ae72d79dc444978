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
* **adaptive batching of essays** — ``/grade_essay`` takes one essay (its public contract), but concurrent essays
  are graded together: one vectorizer pass and one ONNX head run per batch cost ~3 ms CPU per essay instead of
  ~6 ms alone. BentoML 1.4 batches only at the HTTP boundary of an API whose single argument is a list
  (``@bentoml.api(batchable=True)``), or through a second service (``bentoml.depends``: another process and an
  HTTP hop per essay); so the service runs BentoML's own adaptive dispatcher (``CorkDispatcher``, the one behind
  ``batchable=True``) in process. ``LEARNLOOP_SERVING_ESSAY_BATCHING=0`` grades each essay alone.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated

import bentoml
import numpy as np
from pydantic import BaseModel, Field

from learnloop.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from learnloop.settings import get_settings
from serving import _coalesce
from serving._inventory import served_models
from serving._plog import PredictionLog
from serving._scorer import RISK_MODEL, ChampionWatcher, RiskRefused
from serving.data import Opens, PredictionStatus, ServedModel, ServedModelStatus

log = logging.getLogger(__name__)

_coalesce.install()  # one socket write per response (see serving/_coalesce.py)

HOT_ROUTES = ["/predict_risk", "/grade_essay", "/recommend"]
ESSAY_MAX_CHARS = 2_000_000  # transport limit; grade_essay itself sends essays over 50,000 characters to a human
# Adaptive batching of /grade_essay (see the module docstring). The latency bound matches the traffic timeout:
# BentoML's dispatcher cancels a queued essay that waited longer, which is then graded alone (never a failure).
ESSAY_MAX_BATCH_SIZE = 16
ESSAY_MAX_LATENCY_MS = 10_000
_NO_FEATURES: list[str] = []
_EMPTY = np.empty(0)


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


class EssayGradeResponse(BaseModel):
    """The answer of ``/grade_essay``: ``grading_nlp.api.grade_essay``'s ``AiGrade``, field for field."""

    status: str = Field(description="suggested | needs_manual_grading")
    score: int | None = None
    interval: list[int] | None = Field(None, description="conformal interval [low, high] on the prompt's scale")
    confidence: float = 0.0
    needs_review: bool = True
    reasons: list[str] = Field(default_factory=list)
    model_version: str | None = None
    prompt_id: int | None = None
    coverage: float | None = None
    score_range: list[int] | None = None
    latency_ms: float | None = None


class CourseItem(BaseModel):
    item_id: str = Field(min_length=1, max_length=128)
    kind: str = Field("page", max_length=64)
    week_from: int | None = None


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str


class RecommendResponse(BaseModel):
    """The answer of ``/recommend``: ``recommender.api.recommend``'s served list with its A/B arm."""

    user_id: str
    course_id: str
    experiment: str | None = None
    variant: str | None = None
    cold_start: bool = False
    items: list[RecommendedItem] = Field(default_factory=list)
    model_version: str | None = Field(None, description="the learned ranker's registry version (treatment lists)")
    fallback: str | None = Field(None, description="why the treatment arm used popularity instead of the ranker")
    error: str | None = Field(None, description="set on a 4xx/503: what to fix")
    latency_ms: float | None = None


class ModelsResponse(BaseModel):
    """Every model this worker serves (``models``), and the same as ``versions`` / ``errors`` by name."""

    models: list[ServedModel] = Field(default_factory=list, description="every served model, champions first")
    versions: dict[str, str | None] = Field(description="model name -> version held (None: none loaded)")
    errors: dict[str, str] = Field(description="model name -> why it is degraded or unavailable")
    worker_pid: int = Field(default_factory=os.getpid, description="the worker that answered (each loads its own)")
    forbidden_modules_loaded: list[str] = Field(default_factory=list,
                                                description="heavy modules this worker must never import")

    @classmethod
    def of(cls, models: list[ServedModel]) -> ModelsResponse:
        troubled = (ServedModelStatus.degraded, ServedModelStatus.unavailable)
        return cls(models=models, versions={m.name: m.version for m in models},
                   errors={m.name: m.detail or m.status.value for m in models if m.status in troubled},
                   forbidden_modules_loaded=_forbidden_loaded())


FORBIDDEN_MODULES = ("torch", "feast", "training", "pipelines", "sentence_transformers")


def _json(ctx: bentoml.Context, answer: BaseModel):
    """The answer as a finished JSON response: BentoML passes a ``Response`` through as is, which skips its generic
    output path (output-spec validation, serde, a streamed ``IterableResponse``) — ~8 % of a request's CPU."""
    from starlette.responses import Response

    return Response(answer.model_dump_json(), status_code=ctx.response.status_code, media_type="application/json")


def _recommend(*, user_id: str, course_id: str, day: int, items: list, opens: Opens, limit: int,
               treatment_share: float):
    import pandas as pd

    from recommender.api import recommend

    item_frame = pd.DataFrame({"item_id": [i.item_id for i in items], "kind": [i.kind for i in items]})
    if any(i.week_from is not None for i in items):
        item_frame["week_from"] = [i.week_from for i in items]
    return recommend(user_id=user_id, course_id=course_id, interactions=opens.frame(), items=item_frame, day=day,
                     limit=limit, treatment_share=treatment_share)


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
        # Essay grading and recommendations are milliseconds of CPU each: they run on one thread per worker (one
        # worker per core), off the event loop, so a slow essay never holds up a risk request behind it.
        self.cpu_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learnloop-cpu")
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
        return _json(ctx, self._predict_risk(student_id, course_id, ctx))

    def _predict_risk(self, student_id: int, course_id: str, ctx: bentoml.Context) -> RiskResponse:
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

    @bentoml.api(route="/grade_essay")
    async def grade_essay(
        self,
        text: Annotated[str, Field(max_length=ESSAY_MAX_CHARS, description="the essay as submitted")],
        prompt_id: Annotated[int, Field(ge=1, le=1_000_000, description="the essay prompt (ASAP essay_set)")],
    ) -> EssayGradeResponse:
        """An AI-suggested grade with interval, confidence and reasons (``grading_nlp.api.grade_essay``, ONNX,
        torch-free). Bad essays (empty, too long, no model for the prompt) are a 200 with status
        ``needs_manual_grading`` and the reason, never an error."""
        from grading_nlp.api import grade_essay

        started = time.perf_counter()
        grade = None
        if self.settings.serving_essay_batching:
            try:
                grade = await self._essay_batcher()((text, prompt_id))
            except Exception:  # noqa: BLE001 - one essay's failure fails its batch: isolate it by grading alone
                log.exception("a batch of essays failed; grading this one alone")
        if grade is None:  # batching off, dropped after waiting too long, or its batch failed: grade it alone
            grade = await asyncio.get_running_loop().run_in_executor(
                self.cpu_pool, partial(grade_essay, text, prompt_id, settings=self.settings))
        latency_ms = (time.perf_counter() - started) * 1000
        answer = EssayGradeResponse(
            status=grade.status.value, score=grade.score, interval=list(grade.interval) if grade.interval else None,
            confidence=grade.confidence, needs_review=grade.needs_review, reasons=list(grade.reasons),
            model_version=grade.model_version, prompt_id=grade.prompt_id, coverage=grade.coverage,
            score_range=list(grade.score_range) if grade.score_range else None, latency_ms=round(latency_ms, 3))
        self.prediction_log.record(
            model_name=f"essay_grader_p{prompt_id}", model_version=grade.model_version,
            entity={"prompt_id": prompt_id, "essay_sha1": hashlib.sha1(text.encode("utf-8", "replace")).hexdigest(),
                    "chars": len(text)},
            feature_names=_NO_FEATURES, features=_EMPTY,
            output={"score": grade.score, "status": grade.status.value, "confidence": grade.confidence,
                    "needs_review": grade.needs_review}, latency_ms=latency_ms)
        return answer

    def _essay_batcher(self):
        """BentoML's adaptive dispatcher around ``grade_essays`` (created on the event loop, at the first essay)."""
        batcher = getattr(self, "_essay_dispatch", None)
        if batcher is None:
            from bentoml._internal.marshal.dispatcher import CorkDispatcher

            from grading_nlp.api import grade_essays

            async def grade_batch(essays):
                return await asyncio.get_running_loop().run_in_executor(
                    self.cpu_pool, partial(grade_essays, list(essays), settings=self.settings))

            self._essay_dispatcher = CorkDispatcher(
                max_latency_in_ms=ESSAY_MAX_LATENCY_MS, max_batch_size=ESSAY_MAX_BATCH_SIZE,
                fallback=lambda: None, get_batch_size=lambda _essay: 1)
            batcher = self._essay_dispatch = self._essay_dispatcher(grade_batch)
        return batcher

    @bentoml.api(route="/recommend")
    async def recommend(
        self,
        user_id: Annotated[str, Field(min_length=1, max_length=128)],
        course_id: Annotated[str, Field(min_length=1, max_length=128)],
        day: Annotated[int, Field(ge=0, le=100_000, description="days since the course started")],
        items: Annotated[list[CourseItem], Field(max_length=50_000, description="the course's content items")],
        opens: Annotated[Opens, Field(description="content opens in this course, columnar (see Opens)")],
        ctx: bentoml.Context,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        treatment_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5,
    ) -> RecommendResponse:
        """What the learner should open next (``recommender.api.recommend``: A/B arm by user hash, popularity
        within course and week for control and cold starts, the learnloop ranker for treatment)."""
        started = time.perf_counter()
        try:
            served = await asyncio.get_running_loop().run_in_executor(
                self.cpu_pool, partial(_recommend, user_id=user_id, course_id=course_id, day=day, items=items,
                                       opens=opens, limit=limit, treatment_share=treatment_share))
        except (InvalidInput, PermissionDenied) as exc:
            ctx.response.status_code = 400
            return _json(ctx, RecommendResponse(user_id=user_id, course_id=course_id, error=str(exc)))
        except NotFound as exc:
            ctx.response.status_code = 404
            return _json(ctx, RecommendResponse(user_id=user_id, course_id=course_id, error=str(exc)))
        latency_ms = (time.perf_counter() - started) * 1000
        answer = RecommendResponse(
            user_id=user_id, course_id=course_id, experiment=served.experiment, variant=served.variant.value,
            cold_start=served.cold_start, latency_ms=round(latency_ms, 3),
            model_version=getattr(served, "model_version", None), fallback=getattr(served, "fallback", None),
            items=[RecommendedItem(item_id=r.item_id, score=float(r.score), reason=r.reason) for r in served.items])
        self.prediction_log.record_recommendations(served, latency_ms=latency_ms)
        return _json(ctx, answer)

    @bentoml.api(route="/admin/reload")
    async def reload(self) -> ModelsResponse:
        """Operator hook: check every alias now and swap what moved (the poll does this every few seconds), look the
        recommender's champion up now too, then list every model as ``/admin/models`` does."""
        def reload_all() -> list[ServedModel]:
            self.watcher.check()
            return served_models(watcher=self.watcher, settings=self.settings, resolve=True)

        return ModelsResponse.of(await asyncio.to_thread(reload_all))

    @bentoml.api(route="/admin/models")
    async def models(self) -> ModelsResponse:
        """Every model this worker serves — the risk champion, the recommender's ranker and each prompt's essay
        grader — with its version (alias, or for graders where and when it was trained), input schema size and
        whether it is loaded, not loaded yet, degraded or unavailable."""
        return ModelsResponse.of(await asyncio.to_thread(served_models, watcher=self.watcher,
                                                         settings=self.settings))

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.watcher.stop()
        if getattr(self, "_essay_dispatcher", None) is not None:
            self._essay_dispatcher.shutdown()
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)
        self.prediction_log.close()
