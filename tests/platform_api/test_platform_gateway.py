"""Gateway middleware: per-user and per-IP rate limits (memory and Redis), request ids, JSON logs, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid

import pytest
from down_services import SilentServer, closed_port
from fastapi.testclient import TestClient
from platform_fixtures import fresh_database_url, start_platform
from service_checks import service_missing

from platform_api._middleware import JsonFormatter, RedisRateLimiter


def _limited_platform(tmp_path, *, redis_url: str | None = None):
    ip = f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
    for url in fresh_database_url("sqlite", tmp_path):
        yield from start_platform(url, tmp_path / "data", client_address=(ip, 1234),
                                  settings_overrides={"redis_url": redis_url},
                                  per_user_per_minute=5, per_ip_per_minute=12)


def _assert_limits(platform) -> None:
    # Limits are fixed one-minute windows: start well inside one so a reset cannot split the burst.
    into_window = time.time() % 60
    if into_window > 45:
        time.sleep(60 - into_window + 0.5)
    # The admin login used 1 of the IP's 12; the user creation + login below use 2 more.
    user_id, headers = platform.user()
    statuses = [platform.client.get(f"/api/v1/users/{user_id}", headers=headers).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = platform.client.get(f"/api/v1/users/{user_id}", headers=headers)
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limited" and refused.json()["error"]["details"]["limit"] == "user"
    # Other users on the same IP still get through until the IP's own budget (12) is spent.
    assert platform.client.get("/api/v1/courses", headers=platform.admin_headers).status_code == 200
    other_ip = TestClient(platform.app, client=(f"192.0.2.{random.randint(1, 254)}", 1))
    anonymous = [other_ip.get("/api/v1/courses").status_code for _ in range(13)]
    assert anonymous == [401] * 12 + [429]
    assert other_ip.get("/api/v1/courses").json()["error"]["details"]["limit"] == "ip"
    metrics = platform.client.get("/metrics").text
    assert 'http_rate_limited_total{limit="user"}' in metrics and 'http_rate_limited_total{limit="ip"}' in metrics


def test_rate_limits_in_memory(tmp_path):
    for platform in _limited_platform(tmp_path):
        _assert_limits(platform)


@pytest.mark.integration
def test_rate_limits_in_redis(tmp_path):
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError as exc:
        service_missing(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    for platform in _limited_platform(tmp_path, redis_url="redis://127.0.0.1:6379/0"):
        _assert_limits(platform)
        keys = redis.Redis.from_url("redis://127.0.0.1:6379/0").keys("learnloop:rl:user:*")
        assert keys, "the counters live in Redis"


def test_rate_limits_hold_per_process_when_redis_is_down(tmp_path):
    """Redis configured but not answering: the limits still hold, counted in this process's memory (they used to
    be off altogether while Redis was down)."""
    for platform in _limited_platform(tmp_path, redis_url=f"redis://127.0.0.1:{closed_port()}/0"):
        _assert_limits(platform)


def test_a_hung_redis_costs_one_timeout_per_few_seconds_not_one_per_request():
    """A Redis that accepts connections and never answers: the first request waits for the timeout, the next ones
    are limited in memory at once (before, each of them waited 0.5 s); the limit still holds."""
    with SilentServer() as redis_server:
        limiter = RedisRateLimiter(redis_server.url("redis", "/0"))

        async def hits() -> list[bool]:
            try:
                return [(await limiter.hit([("ip:192.0.2.7", 15)])).allowed for _ in range(20)]
            finally:
                await limiter.close()

        started = time.monotonic()
        allowed = asyncio.run(hits())
        elapsed = time.monotonic() - started
    assert allowed == [True] * 15 + [False] * 5
    assert redis_server.connections == 1 and elapsed < 3, (redis_server.connections, elapsed)


def test_requests_during_the_retry_of_a_hung_redis_do_not_wait_for_it():
    """Once Redis has been left alone long enough, one request asks it again; the requests arriving while that one
    waits for the timeout asked it too, each waiting 0.5 s on a connection of its own."""
    with SilentServer() as redis_server:
        limiter = RedisRateLimiter(redis_server.url("redis", "/0"), retry_after_s=0.3)

        async def timed_hit() -> float:
            started = time.monotonic()
            assert (await limiter.hit([("ip:192.0.2.8", 100)])).allowed
            return time.monotonic() - started

        async def scenario() -> list[float]:
            try:
                await timed_hit()  # Redis fails: left alone for 0.3 s
                await asyncio.sleep(0.35)
                return await asyncio.gather(*(timed_hit() for _ in range(5)))
            finally:
                await limiter.close()

        waits = sorted(asyncio.run(scenario()))
    assert waits[-1] >= 0.4 and waits[-2] < 0.2, waits  # one request retried Redis; the rest counted in memory
    assert redis_server.connections == 2, redis_server.connections


def test_request_ids_logs_and_metrics(platform):
    client = platform.client
    records: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(json.loads(JsonFormatter().format(record)))

    handler = Collect()
    logging.getLogger("platform_api.access").addHandler(handler)
    try:
        missing = client.get(f"/api/v1/courses/{uuid.uuid4()}", headers={**platform.admin_headers,
                                                                         "X-Request-ID": "trace-42"})
        generated = client.get("/api/v1/courses", headers={**platform.admin_headers, "X-Request-ID": "bad id!"})
    finally:
        logging.getLogger("platform_api.access").removeHandler(handler)
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "trace-42" and missing.json()["request_id"] == "trace-42"
    assert generated.headers["x-request-id"] != "bad id!" and len(generated.headers["x-request-id"]) == 32
    entry = next(r for r in records if r["request_id"] == "trace-42")
    assert entry["status"] == 404 and entry["route"] == "/api/v1/courses/{course_id}"
    assert entry["method"] == "GET" and entry["duration_ms"] >= 0 and entry["user_id"] == platform.admin_id

    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/courses/{course_id}"' \
        in metrics.text
    assert 'http_request_errors_total{method="GET",route="/api/v1/courses/{course_id}",status="404"}' in metrics.text
    assert "outbox_pending_events" in metrics.text
