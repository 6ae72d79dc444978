"""Gateway concerns as one pure-ASGI middleware: request ids, JSON access logs, rate limits, metrics.

Rate limits are fixed one-minute windows per user (from a verified JWT) and per client IP; a refused
request gets 429 with ``Retry-After``. Counters live in memory, or in Redis when ``LEARNLOOP_REDIS_URL``
is set so that several API processes share them. When Redis does not answer, each process counts in memory
until it does (limits per process, never none), and Redis is asked again only every few seconds, so an outage
costs one timeout per few seconds, not one per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.exceptions import RedisError

from learnloop.errors import PermissionDenied
from learnloop.settings import Settings
from platform_api._security import TokenType, decode_token

access_log = logging.getLogger("platform_api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UNLIMITED_PATHS = frozenset({"/metrics", "/healthz"})


def _route_template(scope) -> str:
    """The matched route's template with its mount prefix (label by template, never the raw path: ids would
    explode the metrics' cardinality). FastAPI reports included routes relative to their include prefix, so
    the prefix is taken from the leading segments of the actual path."""
    route_path = getattr(scope.get("route"), "path", None)
    if not route_path:
        return "unmatched"
    path_parts = scope["path"].rstrip("/").split("/")
    route_parts = route_path.rstrip("/").split("/")
    extra = len(path_parts) - len(route_parts)
    return "/".join(path_parts[:extra + 1]) + route_path if extra > 0 else route_path


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed in ``extra={"fields": {...}}`` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging() -> None:
    root = logging.getLogger("platform_api")
    if not any(getattr(h, "_learnloop_json", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._learnloop_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0
    key: str = ""


class MemoryRateLimiter:
    def __init__(self, *, window_s: int = 60) -> None:
        self.window_s = window_s
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    async def hit(self, limits: list[tuple[str, int]]) -> Decision:
        now = time.time()
        window = int(now // self.window_s)
        retry = max(1, math.ceil((window + 1) * self.window_s - now))
        with self._lock:
            if len(self._counts) > 100_000:  # forget finished windows so memory stays bounded
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            for key, limit in limits:
                seen_window, count = self._counts.get(key, (window, 0))
                count = count + 1 if seen_window == window else 1
                self._counts[key] = (window, count)
                if count > limit:
                    return Decision(False, retry, key)
        return Decision(True)

    async def close(self) -> None:
        return None


class RedisRateLimiter:
    """Counters in Redis, shared by every API process; the in-memory limiter of this process while Redis is down."""

    def __init__(self, url: str, *, window_s: int = 60, retry_after_s: float = 5.0) -> None:
        self.url = url
        self.window_s = window_s
        self.retry_after_s = retry_after_s  # how long Redis is left alone after it failed
        self._redis = None
        self._loop = None
        self._fallback = MemoryRateLimiter(window_s=window_s)
        self._down_until: float | None = None  # monotonic time before which Redis is not asked

    def _client(self):
        # An asyncio Redis connection belongs to one event loop; (re)create it on the loop serving us.
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        if self._redis is None or self._loop is not loop:
            self._redis = redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._loop = loop
        return self._redis

    async def hit(self, limits: list[tuple[str, int]]) -> Decision:
        if self._down_until is not None:
            if time.monotonic() < self._down_until:
                return await self._fallback.hit(limits)
            # This request asks Redis again; the ones arriving while it waits count in memory, not wait as well.
            self._down_until = time.monotonic() + self.retry_after_s
        now = time.time()
        window = int(now // self.window_s)
        retry = max(1, math.ceil((window + 1) * self.window_s - now))
        try:
            pipe = self._client().pipeline(transaction=False)
            for key, _ in limits:
                redis_key = f"learnloop:rl:{key}:{window}"
                pipe.incr(redis_key)
                pipe.expire(redis_key, self.window_s + 5)
            results = await pipe.execute()
        except (RedisError, OSError) as exc:
            # Redis down: limit per process rather than not at all, and leave Redis alone for a few seconds so
            # a Redis that hangs does not add its timeout to every request. Said once per outage, not per request.
            if self._down_until is None:
                access_log.warning("rate limiter: redis unavailable (%s: %s); limiting per API process until it "
                                   "answers", type(exc).__name__, exc)
            self._down_until = time.monotonic() + self.retry_after_s
            return await self._fallback.hit(limits)
        if self._down_until is not None:
            access_log.info("rate limiter: redis answers again; limits are shared again")
            self._down_until = None
        for (key, limit), count in zip(limits, results[::2], strict=True):
            if int(count) > limit:
                return Decision(False, retry, key)
        return Decision(True)

    async def close(self) -> None:
        if self._redis is not None and self._loop is asyncio.get_running_loop():
            await self._redis.aclose()
        self._redis = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("http_request_duration_seconds", "Request latency by route",
                                 ["method", "route", "status"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.errors = Counter("http_request_errors_total", "Responses with status >= 400",
                              ["method", "route", "status"], registry=self.registry)
        self.rate_limited = Counter("http_rate_limited_total", "Requests refused with 429", ["limit"],
                                    registry=self.registry)


class GatewayMiddleware:
    def __init__(self, app, *, settings: Settings, limiter, metrics: Metrics, per_user_per_minute: int,
                 per_ip_per_minute: int) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.metrics = metrics
        self.per_user = per_user_per_minute
        self.per_ip = per_ip_per_minute

    def _user_id(self, headers: dict[bytes, bytes]) -> str | None:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if not auth.lower().startswith("bearer "):
            return None
        try:
            return str(decode_token(settings=self.settings, token=auth[7:].strip(), expected=TokenType.access)["sub"])
        except PermissionDenied:  # an invalid token is rejected later by the route; here it just counts per IP
            return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        client_ip = scope["client"][0] if scope.get("client") else "unknown"
        user_id = self._user_id(headers)
        status_holder = {"status": 500}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        if scope["path"] not in UNLIMITED_PATHS:
            limits = [(f"ip:{client_ip}", self.per_ip)]
            if user_id:
                limits.insert(0, (f"user:{user_id}", self.per_user))
            decision = await self.limiter.hit(limits)
            if not decision.allowed:
                kind = decision.key.split(":", 1)[0]
                self.metrics.rate_limited.labels(kind).inc()
                await self._too_many(send_with_id, request_id, decision, kind)
                self._observe(scope, status_holder["status"], started, request_id, client_ip, user_id)
                return
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status_holder["status"], started, request_id, client_ip, user_id)

    async def _too_many(self, send, request_id: str, decision: Decision, kind: str) -> None:
        body = json.dumps({"error": {"code": "rate_limited",
                                     "message": f"Too many requests for this {kind}; retry after "
                                                f"{decision.retry_after_s} s",
                                     "details": {"limit": kind, "retry_after_s": decision.retry_after_s}},
                           "request_id": request_id}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(decision.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope, status: int, started: float, request_id: str, client_ip: str,
                 user_id: str | None) -> None:
        elapsed = time.perf_counter() - started
        template = _route_template(scope)
        method = scope.get("method", "")
        self.metrics.latency.labels(method, template, str(status)).observe(elapsed)
        if status >= 400:
            self.metrics.errors.labels(method, template, str(status)).inc()
        access_log.info("request", extra={"fields": {
            "request_id": request_id, "method": method, "path": scope["path"], "route": template,
            "status": status, "duration_ms": round(elapsed * 1000, 2), "client_ip": client_ip, "user_id": user_id}})
