"""The ASGI app: ``platform_api.main:app`` (``learnloop serve api`` runs it on 127.0.0.1:8000).

``create_app`` builds the app from settings; the database engine, the outbox relay and the broker
connection are created in the lifespan, so importing this module connects to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
questions, assessments, submissions and grades. Every state change is published as an event on
`lms.<domain>.events` through a transactional outbox. Errors are JSON: `{"error": {"code", "message",
"details"}, "request_id"}` and the message says what to fix."""


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
        publisher = NatsPublisher(settings.nats_url) if settings.nats_url else bus
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
                  responses={422: {"description": "Invalid input; the body says which field and why"}})
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
