"""Public surface of ``recommender``: content search and next-item recommendations.

Both halves answer "what content should this learner see next" over the same course content, the same
embedder and the same permission model (a set of course ids the learner may see, decided by the platform:
published + visibility + enrollment), and both are fed by ``lms.content.events``; so they are one package
with one surface. Their internals stay apart in private subpackages: ``_search`` (chunking, BM25, Qdrant,
fusion, BEIR evaluation) and ``_recommend`` (baselines, the ranker, OULAD evaluation).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from learnloop.errors import InvalidInput, PermissionDenied, Unavailable
from learnloop.events import Event, Topic
from learnloop.settings import Settings, get_settings
from recommender.data import ContentChange, ContentItem, RankerStatus, RecommendationList, SearchHit, Variant

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "apply_content_event",
    "assign_variant",
    "close_search_index",
    "content_weeks_from_events",
    "feedback_from_events",
    "index_items",
    "interactions_from_events",
    "ranker_status",
    "recommend",
    "remove_items",
    "reset_ranker_cache",
    "search",
    "search_index_status",
    "start_search_indexer",
    "sync_search_index",
]

# Every served list goes to this logger with its experiment arm (feedback is attributed through it).
_SERVED_LOG = logging.getLogger("learnloop.recommender.served")

# int8 graph for search: cosine 0.994 to fp32 on SciFact passages and several times faster per query here.
SEARCH_EMBEDDING_PRECISION = "int8"
_INDEXES: dict[str, object] = {}
_CLIENTS: dict[str, object] = {}
_LOCK = threading.Lock()
# After the index could not be opened (a Qdrant server down or hung, a local folder held by another process), it is
# tried again only after this long: meanwhile searches answer Unavailable at once instead of each waiting for the
# client's timeout in turn behind the lock (a hung server made N concurrent searches take 5 s x N).
OPEN_RETRY_AFTER_S = 10.0
_OPEN_FAILURES: dict[str, tuple[float, str]] = {}


def _location(settings: Settings) -> str:
    return settings.qdrant_url or str(settings.qdrant_path)


def _open_index(settings: Settings | None = None):
    """The process-wide search index for this data dir / Qdrant server (one Qdrant client per location)."""
    settings = settings or get_settings()
    key = _location(settings)
    _raise_if_failed_recently(key)
    with _LOCK:
        index = _INDEXES.get(key)
        if index is None:
            _raise_if_failed_recently(key)  # another thread's try failed while this one waited for the lock
            failed = _OPEN_FAILURES.get(key)
            if failed is not None:  # a retry: searches meanwhile fail at once with the last reason, not queue behind it
                _OPEN_FAILURES[key] = (time.monotonic(), failed[1])
            try:
                index = _INDEXES[key] = _build_index(settings, key)
            except Exception as exc:
                reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {str(exc)[:200]}"
                _OPEN_FAILURES[key] = (time.monotonic(), reason)
                raise
            _OPEN_FAILURES.pop(key, None)
            if len(_INDEXES) == 1:
                atexit.register(_close_all)  # local mode flushes and unlocks its folder on close
        return index


def _raise_if_failed_recently(key: str) -> None:
    failed = _OPEN_FAILURES.get(key)
    if failed is not None:
        ago = time.monotonic() - failed[0]
        if ago < OPEN_RETRY_AFTER_S:
            raise Unavailable(f"{failed[1]}; tried {ago:.0f} s ago, next try in {OPEN_RETRY_AFTER_S - ago:.0f} s")


def _build_index(settings: Settings, key: str):
    """Open the Qdrant client of ``key`` and load the index from it (called under ``_LOCK``)."""
    from qdrant_client import QdrantClient

    from models.api import EmbeddingPrecision, get_text_embedder
    from recommender._search.index import SearchIndex

    if settings.qdrant_url:
        client = QdrantClient(url=settings.qdrant_url)
    else:
        settings.qdrant_path.mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=str(settings.qdrant_path))
        except RuntimeError as exc:  # local mode: one process per folder
            if "already accessed" not in str(exc):
                raise
            raise Unavailable(
                f"The search index in {settings.qdrant_path} is open in another process (local Qdrant "
                "allows one, e.g. the running platform API, whose indexer applies content changes "
                "itself); stop that process first, or use a Qdrant server (LEARNLOOP_QDRANT_URL)") from exc
    try:
        index = SearchIndex(
            client=client,
            embedder=get_text_embedder(EmbeddingPrecision(SEARCH_EMBEDDING_PRECISION), settings=settings),
            server_mode=bool(settings.qdrant_url),
            local_path=None if settings.qdrant_url else settings.qdrant_path,
        )
    except BaseException:
        client.close()  # or the folder stays locked by this process and the next try says "another process"
        raise
    _CLIENTS[key] = client
    return index


def _close_all() -> None:
    with _LOCK:
        _INDEXES.clear()
        while _CLIENTS:
            _CLIENTS.popitem()[1].close()


def close_search_index(settings: Settings | None = None) -> None:
    """Release the Qdrant client of this location (local mode allows one client per path at a time)."""
    settings = settings or get_settings()
    key = _location(settings)
    with _LOCK:
        _OPEN_FAILURES.pop(key, None)  # the next use tries at once (e.g. after the other process let go)
        _INDEXES.pop(key, None)
        client = _CLIENTS.pop(key, None)
        if client is not None:
            client.close()


def index_items(items: Iterable[ContentItem], *, settings: Settings | None = None, progress=None) -> int:
    """Add or replace content items in the search index (embeddings cached on disk); returns how many."""
    return _open_index(settings).upsert(items, progress=progress)


def remove_items(item_ids: Iterable[str], *, settings: Settings | None = None) -> int:
    """Remove items from the search index; returns how many were indexed."""
    return _open_index(settings).delete(item_ids)


def sync_search_index(*, settings: Settings | None = None, verify: bool | None = None,
                      migrate: bool = False) -> dict:
    """Apply the platform's content events since the last sync to the search index (one pass), rebuilding a lost
    index from the platform's content; returns ``{"events", "indexed", "removed", "position", "restarted",
    "rebuilding"}``. See ``recommender._search.sync``."""
    from recommender._search.sync import sync_once

    return sync_once(settings=settings, verify=verify, migrate=migrate).as_dict()


def search_index_status(*, settings: Settings | None = None) -> dict:
    """The content indexer's health for the operator page: ``{"name", "status", "detail", "figures"}``."""
    from recommender._search.sync import status

    return status(settings=settings)


def start_search_indexer(*, settings: Settings | None = None, poll_seconds: float = 2.0):
    """Keep the search index current in a daemon thread (what the served platform runs); returns
    ``(thread, stop_event)``."""
    from recommender._search.sync import start_indexer

    return start_indexer(settings=settings, poll_seconds=poll_seconds)


def apply_content_event(
    event: Event,
    *,
    fetch_item: Callable[[str], ContentItem | None] | None = None,
    settings: Settings | None = None,
) -> ContentChange | None:
    """Keep the index current with one ``lms.content.events`` event; returns the change applied (or None).

    ``content.created`` / ``content.updated`` index the item's current text: taken from the payload when it
    carries ``title`` (+ ``body``), else from ``fetch_item(content_id)`` (a lookup in the platform database);
    an item the fetcher no longer returns is removed. ``content.deleted`` removes it. Other topics are ignored.
    """
    if event.topic is not Topic.content:
        return None
    change_name = event.event_type.split(".", 1)[1] if "." in event.event_type else ""
    try:
        change = ContentChange(change_name)
    except ValueError:
        return None
    content_id = event.payload.get("content_id") or event.payload.get("item_id")
    if not content_id:
        raise InvalidInput(f"{event.event_type} event {event.event_id} has no payload.content_id")
    content_id = str(content_id)
    index = _open_index(settings)
    if change is ContentChange.deleted:
        index.delete([content_id])
        return change
    if "title" in event.payload:
        course_id = event.payload.get("course_id") or event.course_id
        item = ContentItem(
            item_id=content_id,
            course_id=str(course_id),
            title=str(event.payload.get("title") or ""),
            body=str(event.payload.get("body") or ""),
            kind=str(event.payload.get("kind") or "page"),
            url=event.payload.get("url"),
        )
    elif fetch_item is not None:
        item = fetch_item(content_id)
        if item is None:  # gone (or no longer searchable) by the time we processed the event
            index.delete([content_id])
            return ContentChange.deleted
    else:
        raise InvalidInput(
            f"{event.event_type} event {event.event_id} carries no title/body; pass fetch_item to read the item"
        )
    index.upsert([item])
    return change


def search(
    query: str,
    *,
    allowed_course_ids: Iterable[str],
    course_id: str | None = None,
    limit: int = 10,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """Hybrid (BM25 + MiniLM) search over the content of the courses the learner may see, best first.

    ``allowed_course_ids`` is the caller's authorization decision (published + visibility + enrollment);
    no item of another course is ever returned. ``course_id`` narrows to one course and must be allowed.
    Raises Unavailable while the content indexer rebuilds a lost index, or while an index opened empty waits for
    it (an empty or partial index would hide content the platform holds; the platform answers a word match).
    """
    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit must be between 1 and 100, got {limit}")
    allowed = {str(c) for c in allowed_course_ids}
    if course_id is not None:
        if str(course_id) not in allowed:
            raise PermissionDenied(f"you may not search course {course_id} (enroll in it first)")
        allowed = {str(course_id)}
    index = _open_index(settings)
    opened_empty = index.opened_empty  # read first: the indexer sets ``rebuilding`` before it clears this
    rebuilding = index.rebuilding
    if rebuilding is not None:  # a partial index would hide what it has not reached yet
        raise Unavailable(rebuilding.describe())
    if opened_empty is not None and not len(index):  # the indexer has not looked at it yet (or runs elsewhere)
        raise Unavailable(f"the search index holds nothing yet ({opened_empty}): the content indexer beside the "
                          "API fills it from the platform's content (`learnloop search sync` where none runs)")
    return index.search(query, allowed_course_ids=allowed, limit=limit)


def assign_variant(
    user_id: str, *, experiment: str = "recommender-v1", treatment_share: float = 0.5
) -> Variant:
    """Deterministic A/B arm of a user: a hash of (experiment, user) mapped to [0, 1) against the share.

    The same user always lands in the same arm of an experiment, arms of different experiments are
    independent, and raising the share only moves users from control into treatment (never back).
    """
    if not 0.0 <= treatment_share <= 1.0:
        raise InvalidInput(f"treatment_share must lie in [0, 1], got {treatment_share}")
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return Variant.treatment if bucket < treatment_share else Variant.control


RANKER_MODEL = "recommender"  # registered model name of the learned ranker
RANKER_REFRESH_SECONDS = 300.0  # how long a resolved champion (or its absence) is trusted before asking again
_RANKERS: dict[str, tuple[float, object, str | None]] = {}


def _champion_ranker(settings: Settings | None = None, *, refresh: bool = False):
    """(the champion ``OnnxRanker`` or None, why not): one load per process and registry, refreshed lazily
    (``refresh``: look the alias up now; the loaded ranker is kept when the version did not move)."""
    import time

    from learnloop.errors import LearnloopError, NotFound

    settings = settings or get_settings()
    key = settings.mlflow_uri
    now = time.monotonic()
    with _LOCK:
        cached = _RANKERS.get(key)
        if cached is not None and now - cached[0] < RANKER_REFRESH_SECONDS and not refresh:
            return cached[1], cached[2]
    from models.api import load_champion_onnx
    from recommender._recommend.service import OnnxRanker

    ranker, reason = None, None
    registry_file = key.removeprefix("sqlite:///") if key.startswith("sqlite:///") else None
    try:
        if registry_file is not None and not Path(registry_file).is_file():
            raise NotFound("no MLflow registry in this data dir yet")  # don't create one just to find it empty
        champion = load_champion_onnx(RANKER_MODEL, settings=settings)
        previous = cached[1] if cached is not None else None
        if previous is not None and previous.version == str(champion.version):
            ranker = previous
        else:
            ranker = OnnxRanker(champion.onnx_bytes, champion.schema, champion.version)
    except NotFound:
        reason = f"no '{RANKER_MODEL}' champion registered (train with `learnloop train recommender`)"
    except (LearnloopError, OSError, ValueError) as exc:  # registry down or a graph this code cannot feed
        logging.getLogger(__name__).warning("recommender model unavailable: %s", exc)
        reason = f"recommender model unavailable: {getattr(exc, 'message', exc)}"
        previous = cached[1] if cached is not None else None
        if previous is not None:  # a champion that cannot be loaded says nothing against the ranker already loaded
            ranker = previous
            reason = (f"kept v{previous.version}: the champion could not be loaded from the registry "
                      f"({getattr(exc, 'message', exc)})")
    with _LOCK:
        _RANKERS[key] = (now, ranker, reason)
    return ranker, reason


def interactions_from_events(events: Iterable) -> pd.DataFrame:
    """Content opens in platform event envelopes (objects, dicts or JSON lines; an event id repeated by a redelivery
    counts once) as training interactions:
    ``course_id, user_id, item_id, day, timestamp, event_type`` (day 0 = the course's start as the platform counts it: its ``course.created`` event, else its first open)."""
    from recommender._recommend import platform_events

    return platform_events.interactions(events)


def feedback_from_events(events: Iterable) -> pd.DataFrame:
    """Clicks (opens) and completions (``video_complete``) of items of the learner's latest served list, with
    the list's experiment and arm: ``course_id, user_id, item_id, experiment, variant, outcome,
    served_event_id, timestamp`` (an event id repeated by a redelivery counts once). ``learnloop train recommender
    --events`` logs these per arm."""
    from recommender._recommend import platform_events

    return platform_events.feedback(events)


def content_weeks_from_events(events: Iterable) -> dict[str, int]:
    """Each content item's planned week of use (0 = the first week; the instructor's ``planned_week`` − 1) from the
    ``content.created`` / ``content.updated`` envelopes, the latest winning: what training reads for the ranker's
    ``planned_week_gap``, as serving reads it from the catalog."""
    from recommender._recommend import platform_events

    return platform_events.content_weeks(events)


def ranker_status(*, settings: Settings | None = None, resolve: bool = False) -> RankerStatus:
    """The learned ranker as ``recommend`` uses it in this process: the champion's version and input count once
    resolved (at the first treatment-arm list), or why treatment falls back to popularity. ``resolve`` looks the
    alias up now (what an operator's reload does) instead of reporting what is cached."""
    settings = settings or get_settings()
    if resolve:
        _champion_ranker(settings, refresh=True)
    with _LOCK:
        cached = _RANKERS.get(settings.mlflow_uri)
    status = RankerStatus(model_name=RANKER_MODEL, alias="champion")
    if cached is None:
        return status
    _, ranker, reason = cached
    if ranker is None:
        return RankerStatus(model_name=RANKER_MODEL, alias="champion", resolved=True, reason=reason)
    return RankerStatus(model_name=RANKER_MODEL, alias="champion", resolved=True, version=ranker.version,
                        n_inputs=ranker.n_inputs, loaded_at=ranker.loaded_at, reason=reason)


def reset_ranker_cache() -> None:
    """Forget the loaded champion ranker (the next ``recommend`` resolves the alias again)."""
    with _LOCK:
        _RANKERS.clear()


def recommend(
    *,
    user_id: str,
    course_id: str,
    interactions,
    items,
    day: int,
    limit: int = 10,
    experiment: str = "recommender-v1",
    treatment_share: float = 0.5,
    use_model: bool = True,
    settings: Settings | None = None,
) -> RecommendationList:
    """What to open next for a learner in a course, logged with its A/B arm.

    ``interactions``: DataFrame[user_id, item_id, day] of content opens in this course (platform activity
    events or OULAD clicks); ``items``: DataFrame[item_id, kind] (+ optional ``week_from``) of the course's
    content; ``day``: days since the course started. Control gets popularity within course and week;
    treatment the learned ranker: the ``champion`` of registered model ``recommender`` (ONNX, loaded once per
    process and re-resolved every few minutes so a promotion is picked up). Without a champion (or with
    ``use_model=False``) treatment gets the popularity list too, with ``fallback`` saying why and
    ``model_version`` None. A learner without history is a cold start and gets popularity within course and
    week in both arms. Items already opened are never recommended.
    """
    from recommender._recommend import service

    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit must be between 1 and 100, got {limit}")
    variant = assign_variant(user_id, experiment=experiment, treatment_share=treatment_share)
    ranker, unavailable = (None, "model disabled (use_model=False)")
    if use_model and variant is Variant.treatment:
        ranker, unavailable = _champion_ranker(settings)
    served = service.recommend(
        user_id=str(user_id),
        course_id=str(course_id),
        interactions=interactions,
        items=items,
        day=int(day),
        limit=limit,
        variant=variant,
        experiment=experiment,
        ranker=ranker,
        ranker_unavailable=unavailable,
    )
    _SERVED_LOG.info(
        "recommendations served",
        extra={
            "user_id": served.user_id,
            "course_id": served.course_id,
            "experiment": served.experiment,
            "variant": served.variant.value,
            "cold_start": served.cold_start,
            "model_version": served.model_version,
            "fallback": served.fallback,
            "items": [r.item_id for r in served.items],
        },
    )
    return served
