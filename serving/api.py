"""Public surface of ``serving``: the HTTP client the platform uses to reach the model service, and starting it.

**Client contract** (``RiskClient``): every call has a timeout (``settings.serving_timeout_s``) and passes a
circuit breaker. When the service is down, slow or failing, the call does not raise: it returns the documented
fallback, a ``RiskPrediction`` with ``status=unavailable`` and ``risk_score=None`` — the platform shows "risk
unavailable" and sets the header ``FALLBACK_HEADER: risk-unavailable`` (never a 500). A student the service
does not know, or who is not enrolled, raises ``learnloop.errors.NotFound`` (the service answered 404 with a
reason code); a malformed request raises ``InvalidInput``.

**Breaker**: after ``failure_threshold`` consecutive failures (connection error, timeout, 5xx) it opens and
calls return the fallback immediately for ``reset_seconds``; then one trial call is let through (half-open):
success closes it, failure opens it again.
"""

from __future__ import annotations

import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from learnloop.errors import InvalidInput, NotFound
from learnloop.settings import Settings, get_settings
from serving.data import PredictionStatus, RiskPrediction, RiskRefusal, ServedModel, ServedModelStatus

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "FALLBACK_HEADER",
    "BreakerState",
    "CircuitBreaker",
    "PredictionStatus",
    "RecommendClient",
    "RiskClient",
    "RiskPrediction",
    "RiskRefusal",
    "ServedModel",
    "ServedModelStatus",
    "encode_opens",
    "online_store_ping",
    "open_online_reader",
    "served_models",
    "start_model_service",
    "stop_model_service",
    "wait_until_ready",
]

FALLBACK_HEADER = "X-Learnloop-Fallback"  # value "risk-unavailable" when the answer is the fallback


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker (thread-safe; the clock is injectable for tests)."""

    def __init__(self, *, failure_threshold: int = 5, reset_seconds: float = 10.0, clock=time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.closed
        if self._clock() - self._opened_at >= self.reset_seconds:
            return BreakerState.half_open
        return BreakerState.open

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open state, only one trial at a time)."""
        with self._lock:
            state = self._state()
            if state is BreakerState.closed:
                return True
            if state is BreakerState.half_open and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


class RiskClient:
    """Calls ``POST /predict_risk`` of the model service with a timeout, a circuit breaker and a fallback."""

    def __init__(self, *, base_url: str | None = None, timeout_s: float | None = None,
                 breaker: CircuitBreaker | None = None, settings: Settings | None = None, transport=None,
                 async_transport=None) -> None:
        import httpx

        settings = settings or get_settings()
        self.base_url = (base_url or settings.serving_url).rstrip("/")
        self.timeout_s = settings.serving_timeout_s if timeout_s is None else timeout_s
        self.breaker = breaker or CircuitBreaker()
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout_s, transport=transport)
        self._async_http = None  # created on first async call, inside the caller's event loop
        self._async_transport = async_transport

    def predict_risk(self, *, student_id: int, course_id: str) -> RiskPrediction:
        """The champion's risk for one registration, or the fallback when the service cannot answer.

        Raises ``NotFound`` (unknown student/course, not enrolled) and ``InvalidInput`` (rejected request).
        """
        import httpx

        if not self.breaker.allow():
            return self._fallback(student_id, course_id, "circuit open: the model service failed recently")
        started = time.perf_counter()
        try:
            response = self._http.post("/predict_risk", json={"student_id": student_id, "course_id": course_id})
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            return self._fallback(student_id, course_id, f"model service unreachable: {type(exc).__name__}")
        return self._answer(response, student_id, course_id, started)

    async def apredict_risk(self, *, student_id: int, course_id: str) -> RiskPrediction:
        """``predict_risk`` for async callers (FastAPI routes): same timeout, breaker and fallback."""
        import httpx

        if not self.breaker.allow():
            return self._fallback(student_id, course_id, "circuit open: the model service failed recently")
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s,
                                                 transport=self._async_transport)
        started = time.perf_counter()
        try:
            response = await self._async_http.post("/predict_risk",
                                                   json={"student_id": student_id, "course_id": course_id})
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            return self._fallback(student_id, course_id, f"model service unreachable: {type(exc).__name__}")
        return self._answer(response, student_id, course_id, started)

    def _answer(self, response, student_id: int, course_id: str, started: float) -> RiskPrediction:
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 500:
            self.breaker.record_failure()
            return self._fallback(student_id, course_id, f"model service answered {response.status_code}")
        self.breaker.record_success()
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 404:
            raise NotFound(body.get("detail") or f"no risk for student {student_id} in {course_id}")
        if response.status_code >= 400:
            raise InvalidInput(f"the model service rejected the request ({response.status_code}): "
                               f"{body.get('error') or body}")
        return RiskPrediction(student_id=student_id, course_id=course_id, risk_score=float(body["risk_score"]),
                              status=PredictionStatus(body["status"]), model_name=body.get("model_name"),
                              model_version=body.get("model_version"), reason=body.get("reason"),
                              latency_ms=latency_ms)

    @staticmethod
    def _fallback(student_id: int, course_id: str, reason: str) -> RiskPrediction:
        return RiskPrediction(student_id=student_id, course_id=course_id, risk_score=None,
                              status=PredictionStatus.unavailable, reason=reason)

    def close(self) -> None:
        self._http.close()

    async def aclose(self) -> None:
        if self._async_http is not None:
            await self._async_http.aclose()


def open_online_reader(*, service: str, online_store: str, project: str, sqlite_path: Path | None = None,
                       redis_connection: str | None = None):
    """The Feast-free online reader serving uses for FeatureService ``service`` (``online_store`` ``sqlite``
    with ``sqlite_path``, or ``redis`` with ``redis_connection``): ``read(student_id=, course_id=)`` for one
    registration, ``read_rows(entity_rows)`` for a batch, ``fill(raw)`` for the shared missing-value policy.
    Equal to Feast's ``get_online_features`` (tests/features parity test)."""
    from serving._online import open_online_reader as _open

    return _open(service=service, online_store=online_store, project=project, sqlite_path=sqlite_path,
                 redis_connection=redis_connection)


def online_store_ping(*, settings: Settings | None = None) -> float | None:
    """Milliseconds for one PING of the online store the model service reads when it is a server (Redis: the
    settings' ``feast_redis_connection``, with serving's timeouts); None for the embedded SQLite file. Raises
    ``Unavailable`` when Redis does not answer (the operator page's row; risk answers its fallback meanwhile)."""
    import redis

    from learnloop.errors import Unavailable
    from learnloop.settings import FeastOnlineStore
    from serving._online import _redis_client

    settings = settings or get_settings()
    if settings.feast_online_store is not FeastOnlineStore.redis:
        return None
    started = time.perf_counter()
    try:
        _redis_client(settings.feast_redis_connection).ping()
    except (redis.RedisError, OSError) as exc:
        raise Unavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return round((time.perf_counter() - started) * 1000, 2)


def served_models(*, settings: Settings | None = None, base_url: str | None = None,
                  timeout_s: float = 2.0) -> list[ServedModel]:
    """Every model the model service serves, as one of its workers holds it (``POST /admin/models``): the risk
    champion, the recommender's ranker and each prompt's essay grader, with version, alias or origin, input count
    and status. Raises ``Unavailable`` when the service does not answer (or answers something else), ``InvalidInput``
    when ``base_url`` is not a URL."""
    import httpx

    from learnloop.errors import Unavailable

    url = (base_url or (settings or get_settings()).serving_url).rstrip("/")
    try:
        response = httpx.post(f"{url}/admin/models", json={}, timeout=timeout_s)
        response.raise_for_status()
        return [ServedModel.model_validate(model) for model in response.json()["models"]]
    except httpx.InvalidURL as exc:  # not an HTTPError: a malformed --url was a traceback
        raise InvalidInput(f"{url} is not a valid URL of the model service ({exc}); pass e.g. "
                           "http://127.0.0.1:3000") from exc
    except httpx.HTTPError as exc:
        raise Unavailable(f"the model service at {url} does not answer /admin/models ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); start it with `learnloop serve models`") from exc
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or an older service without "models"
        raise Unavailable(f"the model service at {url} answered /admin/models without a model list; upgrade and "
                          "restart it (`learnloop serve models`)") from exc


def start_model_service(*, settings: Settings | None = None, host: str | None = None, port: int | None = None,
                        workers: int = 1, poll_seconds: float | None = None,
                        log_path: Path | None = None) -> subprocess.Popen:
    """Start the BentoML model service (``bentoml serve``) as a subprocess on ``host:port`` (default
    ``settings.serving_url``). Stop it with :func:`stop_model_service`; wait with :func:`wait_until_ready`."""
    from serving import _launch

    settings = settings or get_settings()
    return _launch.start(settings, host=host or settings.serving_host, port=port or settings.serving_port,
                         workers=workers, poll_seconds=poll_seconds, log_path=log_path)


def require_free_port(host: str, port: int, *, how_to_change: str) -> None:
    """Raise ``Conflict`` (saying ``how_to_change`` it) when ``host:port`` is taken: a service started there would
    fail to bind while a readiness check got the other server's answers."""
    from serving import _launch

    _launch.require_free(host, port, how_to_change=how_to_change)


def wait_until_ready(url: str, *, timeout: float = 120.0, process: subprocess.Popen | None = None) -> None:
    """Block until the service at ``url`` reports ready (every champion loaded); raises ``Unavailable``."""
    from serving import _launch

    _launch.wait_ready(url, timeout=timeout, process=process)


def stop_model_service(process: subprocess.Popen) -> None:
    """Stop a service started by :func:`start_model_service` (its whole process group)."""
    from serving import _launch

    _launch.stop(process)


class RecommendClient:
    """Calls ``POST /recommend`` of the model service; a drop-in for ``recommender.api.recommend``.

    Same keyword signature and return type (``recommender.data.RecommendationList``), so the platform can take
    either as its recommendation backend (``platform_api.data.MLBackends.recommend``). Timeout and circuit
    breaker as ``RiskClient``; when the service is down, slow, failing or the breaker is open it raises
    ``learnloop.errors.Unavailable`` — the platform then serves its popularity fallback with
    ``X-Learnloop-Fallback: recommendations-popularity``. 400/404 answers raise ``InvalidInput``/``NotFound``
    exactly as the in-process recommender would.
    """

    def __init__(self, *, base_url: str | None = None, timeout_s: float | None = None,
                 breaker: CircuitBreaker | None = None, settings: Settings | None = None, transport=None) -> None:
        import httpx

        settings = settings or get_settings()
        self.base_url = (base_url or settings.serving_url).rstrip("/")
        self.timeout_s = settings.serving_timeout_s if timeout_s is None else timeout_s
        self.breaker = breaker or CircuitBreaker()
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout_s, transport=transport)

    def __call__(self, **kwargs):
        return self.recommend(**kwargs)

    def recommend(self, *, user_id: str, course_id: str, interactions, items, day: int, limit: int = 10,
                  experiment: str = "recommender-v1", treatment_share: float = 0.5):
        """``recommender.api.recommend`` served by the model service (``interactions``/``items``: DataFrames or
        lists of dicts with the same columns)."""
        import httpx

        from learnloop.errors import Unavailable
        from recommender.data import Recommendation, RecommendationList, Variant

        if experiment != "recommender-v1":
            raise InvalidInput("the model service serves the recommender-v1 experiment only")
        if not self.breaker.allow():
            raise Unavailable("circuit open: the model service failed recently")
        body = {"user_id": str(user_id), "course_id": str(course_id), "day": int(day), "limit": int(limit),
                "treatment_share": float(treatment_share), "items": _records(items, ("item_id", "kind", "week_from")),
                "opens": encode_opens(interactions)}
        try:
            response = self._http.post("/recommend", json=body)
            if response.status_code == 400 and "valid list" in response.text:
                # a model service older than packed opens (upgraded after the platform): send JSON lists
                body["opens"] = encode_opens(interactions, packed=False)
                response = self._http.post("/recommend", json=body)
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            raise Unavailable(f"model service unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            self.breaker.record_failure()
            raise Unavailable(f"model service answered {response.status_code}")
        self.breaker.record_success()
        try:
            answer = response.json()
        except ValueError as exc:
            raise Unavailable("unreadable answer from the model service") from exc
        if response.status_code == 404:
            raise NotFound(answer.get("error") or "the model service found nothing to recommend from")
        if response.status_code >= 400:
            raise InvalidInput(f"the model service rejected the request ({response.status_code}): "
                               f"{answer.get('error') or answer}")
        return RecommendationList(
            user_id=answer["user_id"], course_id=answer["course_id"], experiment=answer["experiment"],
            variant=Variant(answer["variant"]), cold_start=bool(answer["cold_start"]),
            model_version=answer.get("model_version"), fallback=answer.get("fallback"),
            items=tuple(Recommendation(item_id=i["item_id"], score=float(i["score"]), reason=i["reason"])
                        for i in answer["items"]))

    def close(self) -> None:
        self._http.close()


def encode_opens(interactions, *, packed: bool = True) -> dict:
    """Content opens (DataFrame or list of dicts with user_id, item_id, day) in the columnar, dictionary-encoded form
    ``POST /recommend`` takes: ``{"users", "items", "user_index", "item_index", "day"}``, opens in input order.

    Open ``k`` is ``users[user_index[k]]`` opening ``items[item_index[k]]`` on ``day[k]``. Ids are sent as strings.
    ``packed``: the three per-open columns as base64 of little-endian int32 (fast to build and to parse), else JSON
    lists. A missing id or day raises ``InvalidInput``."""
    import base64

    import numpy as np
    import pandas as pd

    frame = interactions if isinstance(interactions, pd.DataFrame) else pd.DataFrame(list(interactions))
    columns = {}
    for column in ("user_id", "item_id", "day"):
        if column not in frame.columns and len(frame):
            raise InvalidInput(f"interactions need a {column} column")
        values = frame[column] if column in frame.columns else pd.Series([], dtype=object)
        if values.isna().any():
            raise InvalidInput(f"interactions: {int(values.isna().sum())} opens have no {column}")
        columns[column] = values
    user_index, users = _dictionary(columns["user_id"])
    item_index, items = _dictionary(columns["item_id"])
    days = columns["day"].to_numpy()
    whole = days.astype(np.int64)
    if (whole != days).any():
        raise InvalidInput("interactions: day must be a whole number of days since the course started")
    from serving.data import MAX_DAY

    if len(whole) and (int(whole.min()) < 0 or int(whole.max()) > MAX_DAY):
        raise InvalidInput(f"interactions: day must be within 0..{MAX_DAY} days since the course started, got "
                           f"{int(whole.min())}..{int(whole.max())}")

    def column(values: np.ndarray):
        if not packed:
            return values.tolist()
        return base64.b64encode(np.ascontiguousarray(values, dtype="<i4").tobytes()).decode("ascii")

    return {"users": users, "items": items,
            "user_index": column(user_index), "item_index": column(item_index), "day": column(whole)}


def _dictionary(values) -> tuple:
    """(per-open positions, distinct ids as strings): a categorical column's codes and categories as they are (the
    platform's opens: no per-open work), else the ids factorized in first-seen order."""
    import pandas as pd

    if isinstance(values.dtype, pd.CategoricalDtype):
        # Only the ids the opens use: a filtered frame keeps every category it ever had (an id no open points at
        # would still be sent, and one the service cannot take would fail every request of the course).
        values = values.cat.remove_unused_categories()
        index, uniques = values.cat.codes.to_numpy(), values.cat.categories
    else:
        index, uniques = pd.factorize(values.to_numpy(), sort=False)
    return index, [str(u) for u in uniques]


def _records(frame, columns: tuple[str, ...]) -> list[dict]:
    """DataFrame (or list of dicts) → JSON-ready dicts with the known columns (NaN/None dropped)."""
    rows = frame.to_dict("records") if hasattr(frame, "to_dict") else list(frame)
    out = []
    for row in rows:
        record = {}
        for column in columns:
            value = row.get(column)
            if value is None or (isinstance(value, float) and value != value):
                continue
            record[column] = value.item() if hasattr(value, "item") else value
        out.append(record)
    return out
