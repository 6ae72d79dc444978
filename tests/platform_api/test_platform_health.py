"""Service health on the operator page (/operator and /operator/status): each part, whether it answers, and what
waits on it. A part that is down is a row that says so, never an error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from platform_fixtures import Platform, fresh_database_url, start_platform
from service_checks import service_missing

from platform_api.data import MLBackends


@pytest.fixture
def stalled_platform(tmp_path) -> Iterator[Platform]:
    """A platform whose event relay does not run, with Redis configured, the model service unreachable and a
    wired part that reports itself."""
    database = fresh_database_url("sqlite", tmp_path)
    wired = MLBackends(health=lambda: [{"name": "search index", "status": "ok", "detail": "3 items; 0 waiting",
                                        "figures": {"items": 3}}])
    yield from start_platform(next(database), tmp_path / "data", run_relay=False, ml=wired, settings_overrides={
        "serving_port": 9, "redis_url": "redis://127.0.0.1:6379/0"})


def _services(p: Platform) -> dict[str, dict]:
    response = p.client.get("/operator/status", headers=p.admin_headers)
    assert response.status_code == 200, response.text
    return {row["name"]: row for row in response.json()["services"]}


def _redis_reachable() -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        service_missing(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")


def test_every_part_has_a_row_and_down_parts_say_what_degrades(stalled_platform):
    _redis_reachable()
    services = _services(stalled_platform)
    assert list(services) == ["database", "event stream", "AI grading worker", "redis", "model service",
                              "search index"]
    database = services["database"]
    assert database["status"] == "ok" and database["figures"]["revision"] == database["figures"]["head"]
    assert services["redis"]["status"] == "ok"  # the real Redis on 127.0.0.1:6379
    model = services["model service"]
    assert model["status"] == "down" and "popularity list" in model["detail"] and ":9 " in model["detail"]
    assert services["search index"] == {"name": "search index", "status": "ok", "detail": "3 items; 0 waiting",
                                        "figures": {"items": 3}}
    page = stalled_platform.client.get("/operator", headers=stalled_platform.admin_headers).text
    assert 'data-service="model service"' in page and "does not answer" in page


def test_events_that_do_not_get_out_degrade_the_event_stream(stalled_platform):
    import uuid

    from platform_api._models import OutboxEvent

    p = stalled_platform
    assert _services(p)["event stream"]["status"] == "ok"
    with p.app.state.sessions() as session:
        session.add(OutboxEvent(event_id=uuid.uuid4(), topic="lms.analytics.events", event_type="page_view",
                                envelope={}, created_at=datetime.now(UTC) - timedelta(minutes=10)))
        session.commit()
    stream = _services(p)["event stream"]
    assert stream["status"] == "degraded" and stream["figures"]["pending"] >= 1
    assert stream["figures"]["oldest_pending_s"] >= 590 and "stay in the outbox" in stream["detail"]


def test_a_check_that_fails_is_a_down_row_not_an_error(stalled_platform):
    def broken():
        raise RuntimeError("index folder unreadable")

    p = stalled_platform
    wired = p.app.state.ml
    try:
        p.app.state.ml = MLBackends(health=broken)
        services = _services(p)
        assert services["wired parts"]["status"] == "down" and "unreadable" in services["wired parts"]["detail"]
        assert services["database"]["status"] == "ok"
    finally:
        p.app.state.ml = wired


def test_redis_that_does_not_answer_is_down(tmp_path):
    database = fresh_database_url("sqlite", tmp_path)
    platform = start_platform(next(database), tmp_path / "data", settings_overrides={
        "redis_url": "redis://127.0.0.1:9/0"}, run_relay=False)
    p = next(platform)
    try:
        redis = _services(p)["redis"]
        assert redis["status"] == "down" and "rate limits" in redis["detail"]
    finally:
        platform.close()


def _online_features_row(tmp_path, connection: str) -> dict:
    database = fresh_database_url("sqlite", tmp_path)
    platform = start_platform(next(database), tmp_path / "data", run_relay=False, settings_overrides={
        "feast_online_store": "redis", "feast_redis_connection": connection})
    p = next(platform)
    try:
        response = p.client.get("/operator/status", headers=p.admin_headers)
        assert response.status_code == 200 and "s3cret-pw" not in response.text
        return {row["name"]: row for row in response.json()["services"]}["online features"]
    finally:
        platform.close()


def test_a_redis_online_store_that_does_not_answer_is_down(tmp_path):
    """The online features live in Redis and it is down: every risk answer is the fallback, and the operator page
    says why (it had no row for it, so everything looked ok)."""
    from down_services import closed_port

    row = _online_features_row(tmp_path, f"127.0.0.1:{closed_port()},password=s3cret-pw")
    assert row["status"] == "down" and "fallback" in row["detail"] and "Redis at 127.0.0.1:" in row["detail"]


@pytest.mark.integration
def test_a_redis_online_store_that_answers_is_ok(tmp_path):
    _redis_reachable()
    row = _online_features_row(tmp_path, "127.0.0.1:6379")
    assert row["status"] == "ok" and row["figures"]["latency_ms"] >= 0


def test_prometheus_gets_the_same_health(stalled_platform):
    text = stalled_platform.client.get("/metrics").text
    assert 'learnloop_service_status{part="database"} 1.0' in text
    assert 'learnloop_service_status{part="model service"} 0.0' in text
    assert 'learnloop_service_status{part="search index"} 1.0' in text


def test_parts_that_are_off_are_left_out_of_prometheus(tmp_path):
    database = fresh_database_url("sqlite", tmp_path)
    platform = start_platform(next(database), tmp_path / "data", run_relay=False)  # no Redis configured
    p = next(platform)
    try:
        text = p.client.get("/metrics").text
        assert 'part="redis"' not in text and 'learnloop_service_status{part="database"} 1.0' in text
    finally:
        platform.close()


def test_a_redis_password_is_never_shown(tmp_path):
    database = fresh_database_url("sqlite", tmp_path)
    platform = start_platform(next(database), tmp_path / "data", run_relay=False, settings_overrides={
        "redis_url": "redis://:s3cret-pw@127.0.0.1:9/0"})
    p = next(platform)
    try:
        response = p.client.get("/operator/status", headers=p.admin_headers)
        assert "s3cret-pw" not in response.text
        assert {r["name"]: r for r in response.json()["services"]}["redis"]["figures"]["url"] == "redis://127.0.0.1:9/0"
    finally:
        platform.close()


def test_metrics_still_answer_with_the_database_down(stalled_platform):
    """The health rows come first: a scrape with the database gone says so instead of failing."""
    p = stalled_platform
    p.app.state.engine.dispose()
    url = p.settings.sqlalchemy_url
    database_file = url.split("sqlite:///", 1)[1]
    import os

    os.rename(database_file, database_file + ".gone")
    os.makedirs(database_file)  # a directory where the database file was: every connection fails
    try:
        response = p.client.get("/metrics")
        assert response.status_code == 200
        assert 'learnloop_service_status{part="database"} 0.0' in response.text
    finally:
        os.rmdir(database_file)
        os.rename(database_file + ".gone", database_file)
