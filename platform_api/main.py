"""The ASGI app: ``platform_api.main:app`` without the ML backends; ``learnloop serve api`` and the demo serve
``learnloop.asgi:create_platform_app`` (this app wired with search, recommendations and the workers) on 127.0.0.1:8000.

``create_app`` builds the app from settings; the database engine, the outbox relay and the broker
connection are created in the lifespan, so importing this module connects to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError

from learnloop.settings import Settings, get_settings
from platform_api import _errors, _health, _migrate, _web
from platform_api._db import make_engine, make_sessionmaker
from platform_api._middleware import (
    GatewayMiddleware,
    MemoryRateLimiter,
    Metrics,
    RedisRateLimiter,
    configure_logging,
)
from platform_api._models import Alert, OutboxEvent
from platform_api._outbox import EventBus, NatsPublisher, OutboxRelay
from platform_api._routes import (
    alerts,
    assessments,
    auth,
    content,
    courses,
    events,
    grading,
    operator,
    plan,
    recommendations,
    risk,
    search,
    users,
)
from platform_api.data import AlertStatus, MLBackends
from serving.api import RiskClient

log = logging.getLogger("platform_api.main")

API_PREFIX = "/api/v1"

DESCRIPTION = """The learnloop LMS: users, scoped roles, courses, enrollments, versioned content,
questions, assessments, submissions and grades, with the machine-learning answers built in (recommendations,
search, at-risk scores and alerts, AI-assisted essay grades). Every state change is published as an event on
`lms.<domain>.events` through a transactional outbox.

**Sign in:** `POST /api/v1/auth/login` with `{"email", "password"}`, then send `Authorization: Bearer
<access_token>` (the **Authorize** button here takes the access token). Access tokens last 30 minutes by default
(`LEARNLOOP_ACCESS_TOKEN_MINUTES`); renew them with `POST /api/v1/auth/refresh`.

**Errors** are JSON: `{"error": {"code", "message", "details"}, "request_id"}`, and the message says what to fix:
401 not signed in or the token expired, 403 signed in but not allowed, 404 no such thing (or not visible to you),
409 the state forbids it (a duplicate, a decision already made), 422 invalid input (`details` lists the fields),
429 too many requests (wait `Retry-After` seconds), 503 a dependency is down."""

# One description per tag, in the order /docs lists them.
OPENAPI_TAGS = [
    {"name": "auth", "description": "Sign in and renew tokens (no token needed)."},
    {"name": "users", "description": "Accounts, roles and permissions, the learner's own enrollments and "
                                     "assessments, GDPR export and erasure."},
    {"name": "courses", "description": "Courses, enrollment (`POST /courses/{id}/enrollments` with no body "
                                       "enrolls yourself) and the course plan by week."},
    {"name": "enrollments", "description": "A learner's progress in a course."},
    {"name": "content", "description": "Versioned course content; every change reaches search and "
                                       "recommendations through the outbox."},
    {"name": "assessments", "description": "Questions, assessments and submissions; an essay submission is "
                                           "queued for AI-assisted grading."},
    {"name": "events", "description": "Learner activity (opening content is `content_view`), what "
                                      "recommendations and the course plan count."},
    {"name": "ml", "description": "The model answers: recommendations, content search, at-risk scores. Each has a "
                                  "documented fallback when the model service is down."},
    {"name": "grading", "description": "Course staff review AI essay grades: the queue, accept or override, and "
                                       "AI-vs-instructor agreement."},
    {"name": "alerts", "description": "At-risk alerts for course staff (never shown to learners) and their "
                                      "outcomes."},
    {"name": "operator", "description": "Service health, models, drift and predictions (operators and admins)."},
]


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error the API answers (platform_api._errors).",
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {"type": "object", "required": ["code", "message", "details"], "properties": {
            "code": {"type": "string", "examples": ["permission_denied"]},
            "message": {"type": "string", "description": "What went wrong and what to do",
                        "examples": ["Only this course's staff may do this"]},
            "details": {"description": "For 422: the fields and why (loc, msg, type)"}}},
        "request_id": {"type": ["string", "null"], "description": "Quote it when you report a problem"},
    },
}


def _error_responses(path: str, operation: dict[str, Any]) -> dict[str, str]:
    """The errors an operation can answer: 401/403 where a token is needed, 404 where the path names a thing,
    422 where there is input, 429 everywhere (rate limits)."""
    codes: dict[str, str] = {}
    if path.startswith(f"{API_PREFIX}/auth/"):
        codes["401"] = "Wrong email or password, or an invalid refresh token"
    else:
        codes["401"] = "Not signed in, or the token expired: sign in again"
        codes["403"] = "Signed in, but your roles do not allow this"
    if "{" in path:
        codes["404"] = "No such item, or you may not know it exists"
    if operation.get("parameters") or operation.get("requestBody"):
        codes["422"] = "Invalid input; `details` says which field and why"
    codes["429"] = "Too many requests; retry after `Retry-After` seconds"
    return codes


def install_openapi(app: FastAPI) -> None:
    """The generated OpenAPI document, with the errors each operation can answer and the one error body they share
    (FastAPI would document 422 as its own ``HTTPValidationError``, which this API never sends)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code, description in _error_responses(path, operation).items():
                    documented = responses.get(code, {})
                    if code == "422" or "content" not in documented:
                        documented["content"] = body
                    if not documented.get("description") or documented["description"] == "Validation Error":
                        documented["description"] = description
                    responses[code] = documented
                for code, documented in responses.items():  # errors a route documented itself (409, 501 …)
                    if code[:1] in ("4", "5") and "content" not in documented:
                        documented["content"] = body
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def create_app(settings: Settings | None = None, *, migrate: bool = True, run_relay: bool = True,
               per_user_per_minute: int | None = None, per_ip_per_minute: int | None = None,
               ml: MLBackends | None = None) -> FastAPI:
    """Build the API. ``migrate`` brings the schema to head at startup (idempotent).

    ``ml`` carries the in-process ML functions (search, recommendations) that this package may not import
    (see ``platform_api._ml_ports``); without them those routes answer 503 or their documented fallback.
    """
    settings = settings or get_settings()
    bus = EventBus()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        engine = make_engine(settings.sqlalchemy_url)
        if migrate:
            await asyncio.to_thread(_migrate.upgrade, engine)
        sessions = make_sessionmaker(engine)
        publisher = (NatsPublisher(settings.nats_url, duplicate_window_s=settings.nats_duplicate_window_s)
                     if settings.nats_url else bus)
        relay = OutboxRelay(sessions, publisher)

        @event.listens_for(sessions, "after_commit")
        def _wake_relay(session) -> None:
            if session.info.pop("outbox_dirty", False):
                relay.wake()

        app.state.engine, app.state.sessions, app.state.relay = engine, sessions, relay
        # One client (and so one circuit breaker) per app: every request shares the model service's health.
        app.state.risk_client = RiskClient(settings=settings)
        task = asyncio.create_task(relay.run_forever()) if run_relay else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await publisher.close()
            app.state.risk_client.close()
            await app.state.risk_client.aclose()
            await limiter.close()
            engine.dispose()

    app = FastAPI(title="learnloop platform API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  openapi_tags=OPENAPI_TAGS)
    app.state.settings = settings
    app.state.bus = bus
    app.state.metrics = metrics
    app.state.ml = ml or MLBackends()
    limiter = RedisRateLimiter(settings.redis_url) if settings.redis_url else MemoryRateLimiter()
    per_user = per_user_per_minute or settings.rate_limit_per_minute
    # An IP may carry several users (a classroom behind NAT): its budget is a multiple of one user's.
    per_ip = per_ip_per_minute or 4 * settings.rate_limit_per_minute
    app.add_middleware(GatewayMiddleware, settings=settings, limiter=limiter, metrics=metrics,
                       per_user_per_minute=per_user, per_ip_per_minute=per_ip)
    _errors.install(app)
    app.state.page_error = _web.page_error  # browsers on the pages get an HTML error page

    for module in (auth, users, courses, plan, content, assessments, events, risk, search, recommendations):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(grading.router, prefix=API_PREFIX)
    app.include_router(grading.pages)  # the server-rendered review page under /grading
    app.include_router(alerts.router, prefix=API_PREFIX)
    app.include_router(operator.build_router(settings, services=lambda: [row.as_dict() for row in health_rows()],
                                             served=lambda: _health.served_models(settings)))
    # Server-rendered staff pages (cookie sign-in with the API's JWT): the instructor alerts page.
    app.include_router(_web.router)
    app.include_router(alerts.pages)
    app.include_router(plan.pages)
    install_openapi(app)

    pending = Gauge("outbox_pending_events", "Outbox events not yet published", registry=metrics.registry)
    delivered = Gauge("outbox_delivered_events", "Events the relay published since start", registry=metrics.registry)
    risk_alerts = Gauge("risk_alerts", "At-risk alerts raised by the interventions job, by status",
                        ["status"], registry=metrics.registry)
    service_status = Gauge("learnloop_service_status", "Health of each part the platform depends on (the operator "
                           "page's rows): 1 ok, 0.5 degraded, 0 down; parts that are off are left out", ["part"],
                           registry=metrics.registry)

    def health_rows() -> list[_health.ServiceHealth]:
        return _health.service_health(sessions=app.state.sessions, settings=settings, relay=app.state.relay,
                                      extra=app.state.ml.health)

    cached_health = _health.CachedHealth(health_rows)  # what anonymous /metrics scrapes get

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        # Health first (cached, never raises): with the database down the other gauges cannot be read, and the
        # scrape still says which part is down.
        service_status.clear()
        for row in cached_health.rows():
            if row.status in _health.STATUS_VALUE:
                service_status.labels(part=row.name).set(_health.STATUS_VALUE[row.status])
        try:
            with app.state.sessions() as session:
                pending.set(session.scalar(select(func.count()).select_from(OutboxEvent)
                                           .where(OutboxEvent.published_at.is_(None))) or 0)
                counts = dict(session.execute(select(Alert.status, func.count()).group_by(Alert.status)).all())
        except SQLAlchemyError:
            log.warning("metrics: the database did not answer; database gauges left as they were")
        else:
            for status in AlertStatus:
                risk_alerts.labels(status=status.value).set(counts.get(status, 0))
        delivered.set(app.state.relay.delivered_total)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
