"""Service health for operators: each part the platform depends on, whether it answers, and what is waiting on it.

Every check is bounded (short timeouts) and never raises: a part that is down is a row that says so and what
degrades meanwhile (the documented fallbacks), never an error page. Shown at the top of the operator page and in
``/operator/status``; ``/healthz`` stays a plain liveness probe.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from learnloop.settings import FeastOnlineStore, Settings
from platform_api._models import GradingJob, GradingJobState, OutboxEvent, Submission, SubmissionStatus

log = logging.getLogger("platform_api.health")

OK, DEGRADED, DOWN, OFF = "ok", "degraded", "down", "off"
STATUS_VALUE = {OK: 1.0, DEGRADED: 0.5, DOWN: 0.0}  # the Prometheus gauge learnloop_service_status
RELAY_LAG_S = 120  # an unpublished event older than this means the relay is not getting through
GRADING_WAIT_S = 15 * 60  # an essay waiting longer than this for its AI grade means the worker is behind or off


@dataclass(frozen=True)
class ServiceHealth:
    name: str
    status: str  # ok | degraded | down | off
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age_s(when: datetime | None, now: datetime) -> float | None:
    """Seconds since ``when`` (aware UTC from the database: see ``_models.UTCTimestamp``)."""
    return None if when is None else round((now - when).total_seconds(), 1)


@functools.cache
def _head(script_directory, config) -> str | None:
    """The code's migration head (read from the scripts once per process)."""
    return script_directory.from_config(config()).get_current_head()


def _database(session: Session, settings: Settings) -> ServiceHealth:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from platform_api._migrate import alembic_config

    started = time.perf_counter()
    session.execute(text("SELECT 1"))
    latency = round((time.perf_counter() - started) * 1000, 2)
    backend = session.get_bind().dialect.name
    current = MigrationContext.configure(session.connection()).get_current_revision()
    head = _head(ScriptDirectory, alembic_config)
    figures = {"backend": backend, "revision": current, "head": head, "latency_ms": latency}
    if current != head:
        return ServiceHealth("database", DEGRADED, f"{backend}: schema at {current}, code expects {head}; run "
                             "`learnloop serve api` (migrates at start) or restart the API", figures)
    return ServiceHealth("database", OK, f"{backend}, schema {current}, SELECT 1 in {latency} ms", figures)


def _outbox(session: Session, settings: Settings, relay: Any, now: datetime) -> ServiceHealth:
    pending, oldest = session.execute(select(func.count(), func.min(OutboxEvent.created_at))
                                      .where(OutboxEvent.published_at.is_(None))).one()
    lag = _age_s(oldest, now)
    target = "NATS JetStream" if settings.nats_url else "the in-process bus (NATS off)"
    figures = {"pending": int(pending), "oldest_pending_s": lag, "target": target,
               "delivered": getattr(relay, "delivered_total", None), "failures": getattr(relay, "failures_total", None)}
    if lag is not None and lag > RELAY_LAG_S:
        return ServiceHealth("event stream", DEGRADED, f"{pending} events waiting to reach {target}, the oldest "
                             f"{lag:.0f} s; they stay in the outbox and go out when it answers", figures)
    return ServiceHealth("event stream", OK, f"publishing to {target}; {pending} waiting", figures)


def _grading(session: Session, now: datetime) -> ServiceHealth:
    waiting, oldest, failing = session.execute(select(
        func.count(), func.min(GradingJob.next_attempt_at),
        func.count().filter(GradingJob.attempts > 0))
        .join(Submission, Submission.id == GradingJob.submission_id)
        .where(GradingJob.state == GradingJobState.pending,
               Submission.status == SubmissionStatus.queued_for_ai_grading)).one()  # a graded one waits for nothing
    lag = _age_s(oldest, now)
    figures = {"waiting": int(waiting), "oldest_due_s": lag, "retrying": int(failing)}
    if lag is not None and lag > GRADING_WAIT_S:
        return ServiceHealth("AI grading worker", DEGRADED, f"{waiting} essays waiting, one due {lag / 60:.0f} min "
                             "ago: the worker is behind or not running (`learnloop grading work`); staff can "
                             "grade by hand meanwhile", figures)
    return ServiceHealth("AI grading worker", OK, f"{waiting} essays waiting ({failing} after a failed try)", figures)


def _public_url(url: str) -> str:
    """``url`` without its user and password (shown to operators and in logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _redis(settings: Settings) -> ServiceHealth:
    if not settings.redis_url:
        return ServiceHealth("redis", OFF, "not configured: rate limits are kept per API process")
    import redis

    try:
        started = time.perf_counter()
        redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5).ping()
    except (redis.RedisError, OSError) as exc:
        return ServiceHealth("redis", DOWN, f"{type(exc).__name__}: {str(exc)[:200]}; rate limits fall back "
                             "per process", {"url": _public_url(settings.redis_url)})
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ServiceHealth("redis", OK, f"PING in {latency} ms", {"latency_ms": latency})


def _model_service(settings: Settings) -> ServiceHealth:
    url = settings.serving_url.rstrip("/") + "/readyz"
    try:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 (the configured service URL)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return ServiceHealth("model service", DOWN, f"{settings.serving_url} does not answer ({exc}); risk scores "
                             "answer their fallback and recommendations the course's popularity list",
                             {"url": settings.serving_url})
    latency = round((time.perf_counter() - started) * 1000, 2)
    if status != 200:
        return ServiceHealth("model service", DEGRADED, f"{settings.serving_url} answers {status} to /readyz "
                             "(no champion loaded?); fallbacks as when it is down", {"url": settings.serving_url})
    return ServiceHealth("model service", OK, f"{settings.serving_url} ready in {latency} ms",
                         {"url": settings.serving_url, "latency_ms": latency})


def _online_features(settings: Settings) -> ServiceHealth:
    """The Redis online feature store the model service reads (only when it is Redis, not the embedded file)."""
    from learnloop.errors import Unavailable
    from serving.api import online_store_ping

    address = settings.feast_redis_connection.split(",", 1)[0]  # options may carry a password: never shown
    try:
        latency = online_store_ping(settings=settings)
    except Unavailable as exc:
        return ServiceHealth("online features", DOWN, f"Redis at {address} does not answer ({exc.message}); risk "
                             "scores answer their fallback", {"redis": address})
    return ServiceHealth("online features", OK, f"Redis at {address}, PING in {latency} ms",
                         {"redis": address, "latency_ms": latency})


def served_models(settings: Settings) -> list[dict[str, Any]]:
    """What the model service serves, model by model (``POST /admin/models``), for the operator page: the risk
    champion, the recommender's ranker and every essay grader with status, version and origin. Raises
    ``learnloop.errors.Unavailable`` when the service does not answer (the page says so)."""
    from serving.api import served_models as fetch

    return [model.model_dump(mode="json") for model in fetch(settings=settings, timeout_s=2.0)]


def _guarded(name: str, check: Callable[[], ServiceHealth]) -> ServiceHealth:
    try:
        return check()
    except Exception as exc:  # a check must never take the page down
        log.exception("health check %s failed", name)
        return ServiceHealth(name, DOWN, f"{type(exc).__name__}: {str(exc)[:300]}")


def service_health(*, sessions: sessionmaker[Session], settings: Settings, relay: Any = None,
                   extra: Callable[[], list[dict[str, Any]]] | None = None) -> list[ServiceHealth]:
    """One row per part: database, event stream, AI grading worker, redis, model service, the online feature
    store when it is Redis, then ``extra`` (parts wired by the process that starts the API, e.g. the search
    index)."""
    now = datetime.now(UTC)

    def in_session(check: Callable[[Session], ServiceHealth]) -> Callable[[], ServiceHealth]:
        def run() -> ServiceHealth:
            with sessions() as session:
                return check(session)
        return run

    rows = [
        _guarded("database", in_session(lambda s: _database(s, settings))),
        _guarded("event stream", in_session(lambda s: _outbox(s, settings, relay, now))),
        _guarded("AI grading worker", in_session(lambda s: _grading(s, now))),
        _guarded("redis", lambda: _redis(settings)),
        _guarded("model service", lambda: _model_service(settings)),
    ]
    if settings.feast_online_store is FeastOnlineStore.redis:
        rows.append(_guarded("online features", lambda: _online_features(settings)))
    if extra is not None:
        try:
            wired = extra()
        except Exception as exc:  # as in _guarded
            log.exception("health check of the wired parts failed")
            wired = [{"name": "wired parts", "status": DOWN, "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}]
        for row in wired:
            try:
                rows.append(ServiceHealth(**row))
            except TypeError:
                rows.append(ServiceHealth(str(row.get("name", "wired part")) if isinstance(row, dict) else "wired part",
                                          DOWN, f"malformed health row: {str(row)[:200]}"))
    return rows


class CachedHealth:
    """:func:`service_health` at most once per ``ttl_s`` (``/metrics`` is scraped often and needs no sign-in):
    callers within the window share the last rows, and one refresh runs at a time."""

    def __init__(self, compute: Callable[[], list[ServiceHealth]], ttl_s: float = 15.0) -> None:
        self._compute, self._ttl_s = compute, ttl_s
        self._lock = threading.Lock()
        self._rows: list[ServiceHealth] | None = None
        self._at = float("-inf")

    def rows(self) -> list[ServiceHealth]:
        with self._lock:
            if self._rows is None or time.monotonic() - self._at >= self._ttl_s:
                self._rows, self._at = self._compute(), time.monotonic()
            return self._rows
