"""The platform's client of the model service: timeout, circuit breaker, documented fallback."""

from __future__ import annotations

import httpx
import pytest
from serving_fixtures import COURSE, STUDENT_FULL, UNKNOWN_STUDENT, RunningService, free_port

from learnloop.errors import InvalidInput, NotFound
from serving.api import BreakerState, CircuitBreaker, PredictionStatus, RiskClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingTransport(httpx.BaseTransport):
    """Answers with a fixed status (or raises) and counts the calls that actually went out."""

    def __init__(self, status: int | None, body: dict | None = None) -> None:
        self.status, self.body, self.calls = status, body or {}, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(self.status, json=self.body, request=request)


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_the_reset():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=10, clock=clock)
    transport = CountingTransport(None)
    client = RiskClient(base_url="http://model-service", breaker=breaker, transport=transport, timeout_s=0.5)
    for _ in range(3):
        assert client.predict_risk(student_id=1, course_id=COURSE).status is PredictionStatus.unavailable
    assert breaker.state is BreakerState.open and transport.calls == 3
    answer = client.predict_risk(student_id=1, course_id=COURSE)
    assert answer.status is PredictionStatus.unavailable and answer.risk_score is None
    assert "circuit open" in answer.reason and transport.calls == 3  # short-circuited: nothing went out
    clock.now = 10.0
    assert breaker.state is BreakerState.half_open
    client.predict_risk(student_id=1, course_id=COURSE)  # the trial fails → open again
    assert transport.calls == 4 and breaker.state is BreakerState.open
    clock.now = 20.0
    transport.status, transport.body = 200, {"risk_score": 0.25, "status": "scored", "model_name": "risk",
                                             "model_version": "3"}
    answer = client.predict_risk(student_id=1, course_id=COURSE)
    assert answer.risk_score == 0.25 and answer.model_version == "3" and breaker.state is BreakerState.closed


def test_5xx_counts_as_failure_but_404_and_400_are_answers():
    breaker = CircuitBreaker(failure_threshold=2, reset_seconds=60)
    client = RiskClient(base_url="http://m", breaker=breaker, transport=CountingTransport(503, {"status": "x"}))
    assert client.predict_risk(student_id=1, course_id=COURSE).status is PredictionStatus.unavailable
    refused = RiskClient(base_url="http://m", breaker=breaker,
                         transport=CountingTransport(404, {"detail": "student 1 is not enrolled", "status": "refused"}))
    with pytest.raises(NotFound, match="not enrolled"):
        refused.predict_risk(student_id=1, course_id=COURSE)
    assert breaker.state is BreakerState.closed  # a refusal proves the service is up
    rejected = RiskClient(base_url="http://m", breaker=breaker, transport=CountingTransport(400, {"error": "bad"}))
    with pytest.raises(InvalidInput):
        rejected.predict_risk(student_id=1, course_id=COURSE)


def test_service_down_gives_the_fallback_quickly():
    import time

    client = RiskClient(base_url=f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    started = time.perf_counter()
    answer = client.predict_risk(student_id=STUDENT_FULL, course_id=COURSE)
    assert answer.is_fallback and answer.risk_score is None and "unreachable" in answer.reason
    assert time.perf_counter() - started < 2.0


@pytest.mark.integration
def test_client_against_the_running_service(model_service: RunningService):
    client = RiskClient(base_url=model_service.url, timeout_s=5)
    answer = client.predict_risk(student_id=STUDENT_FULL, course_id=COURSE)
    assert answer.status is PredictionStatus.scored and 0 <= answer.risk_score <= 1 and answer.model_version
    with pytest.raises(NotFound, match="unknown"):
        client.predict_risk(student_id=UNKNOWN_STUDENT, course_id=COURSE)


class AsyncCountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, status: int | None, body: dict | None = None) -> None:
        self.sync = CountingTransport(status, body)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.sync.handle_request(request)


def test_async_client_shares_the_breaker_and_fallback():
    import asyncio

    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=60)
    transport = AsyncCountingTransport(None)
    client = RiskClient(base_url="http://m", breaker=breaker, async_transport=transport)

    async def calls():
        first = await client.apredict_risk(student_id=1, course_id=COURSE)
        second = await client.apredict_risk(student_id=1, course_id=COURSE)
        await client.aclose()
        return first, second

    first, second = asyncio.run(calls())
    assert first.is_fallback and "unreachable" in first.reason
    assert second.is_fallback and "circuit open" in second.reason and transport.sync.calls == 1
