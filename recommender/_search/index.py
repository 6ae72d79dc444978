"""The hybrid, permission-aware content index: Qdrant is the store, BM25 + dense candidates are fused.

Storage: one Qdrant point per content item (id = uuid5 of the item id) holding a *multivector* — one
MiniLM vector per passage — compared with MAX_SIM, so an item scores by its best passage; the payload holds
``item_id``, ``course_id`` (keyword-indexed), title, body and url. Qdrant is the source of truth: the BM25
index and the in-process mirror are rebuilt from it when a process opens the index.

Querying, and why there are two paths:

* **Qdrant server** (``settings.qdrant_url``): the dense candidates come from Qdrant itself with a
  ``course_id ∈ allowed`` filter inside the query (native payload index, fast at any size).
* **Qdrant local mode** (the embedded default): qdrant-client's local search is pure Python — measured here
  at 1,000 items / 2,000 points: ~50 ms unfiltered and ~300 ms with a ``MatchAny`` course filter per query,
  which alone breaks a 50 ms p99. Local mode is itself an exact brute-force scan, so the index keeps the same
  vectors as one float32 matrix in memory and does that scan with numpy: the allowed-course mask is applied
  to the scores *before* top-k (the filter is part of the scoring, not a post-filter on a short list), and
  the exact same items come out, ~1 ms at 10k passages.

When the Qdrant server fails a query (down, hung, restarting), the dense candidates come from the in-process
scan instead (every process keeps the vectors for BM25's snapshot anyway): the same items, exactly scored, and the
server is left alone for ``SERVER_RETRY_AFTER_S`` so a hung server costs one timeout per window, not one per query.

In both paths BM25 is computed over allowed items only (the mask zeroes the rest before ranking), and a
final check drops any hit whose course is not allowed — a learner never sees content of a course they may
not see, whatever a retriever returned.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from learnloop.errors import InvalidInput
from recommender._search import fusion
from recommender._search.chunking import passages
from recommender._search.lexical import LexicalIndex
from recommender.data import ContentItem, FusionMethod, SearchHit

log = logging.getLogger(__name__)

COLLECTION = "content"
SERVER_RETRY_AFTER_S = 30.0  # after a failed server query, dense candidates come from the in-process scan this long
_POINT_NAMESPACE = uuid.UUID("8f0f4f0e-3c2a-4f7e-9f57-0d1c2b7a9e11")
DEFAULT_CANDIDATES = 100  # each retriever's top-k that enters fusion (also recall@100 in the evaluation)
# A served hit that shares no word with the query must be at least this close in meaning (cosine of the MiniLM
# embeddings). Scores are min-max normalised per query, so without a floor a query with no answer ("zzzqqxv") still
# gets a "best" hit scored 1.0. Measured on the course catalog: gibberish queries reach 0.20-0.29, weak real topics
# 0.31 and up, good matches 0.48-0.62. Only `search` applies it; the BEIR evaluation ranks every candidate.
MIN_SIMILARITY_WITHOUT_A_SHARED_WORD = 0.3


@dataclass(frozen=True)
class FusionConfig:
    """Fusion of BM25 and dense; alpha is the dense weight (tuned on SciFact train qrels, see eval)."""

    method: FusionMethod = FusionMethod.convex
    alpha: float = 0.5
    candidates: int = DEFAULT_CANDIDATES


@dataclass
class Rebuild:
    """An empty index being refilled from the platform's content by the content indexer (``_search.sync``)."""

    reason: str
    started_at: datetime
    events_total: int  # content events to apply, counted when the rebuild started
    events_done: int = 0
    items: int = 0  # items indexed so far
    items_before: int = 0  # what the index held before it was lost (the indexer's cursor)

    def describe(self) -> str:
        return (f"the search index is being rebuilt from the platform's content ({self.reason}): "
                f"{self.events_done:,} of {self.events_total:,} content events applied, {self.items:,} items, "
                f"since {self.started_at.astimezone(UTC):%H:%M:%S} UTC")

    def as_dict(self) -> dict:
        return {**asdict(self), "started_at": self.started_at.isoformat(timespec="seconds")}

    @classmethod
    def from_dict(cls, saved: dict) -> Rebuild:
        return cls(**{**saved, "started_at": datetime.fromisoformat(saved["started_at"])})


@dataclass(frozen=True)
class Candidates:
    """Every candidate of one query with both retrievers' scores (NaN where a retriever did not return it)."""

    positions: np.ndarray  # item positions in the snapshot
    bm25: np.ndarray
    dense: np.ndarray


def point_id(item_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, item_id))


def item_text(item: ContentItem) -> str:
    """What BM25 reads: the whole item (BM25 has no window, unlike the embedder)."""
    return f"{item.title}\n{item.body}".strip()


class _Snapshot:
    """Immutable arrays for querying, rebuilt after changes (readers never see a half-applied update)."""

    def __init__(self, items: Sequence[ContentItem], vectors: Sequence[np.ndarray]) -> None:
        self.items = list(items)
        self.course_ids = np.asarray([item.course_id for item in self.items], dtype=object)
        counts = np.asarray([len(v) for v in vectors], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
        self.matrix = (
            np.ascontiguousarray(np.concatenate(list(vectors)), dtype=np.float32)
            if len(vectors)
            else np.zeros((0, 384), dtype=np.float32)
        )
        self.lexical = LexicalIndex([item_text(item) for item in self.items])

    def allowed_mask(self, allowed_course_ids: Iterable[str]) -> np.ndarray:
        allowed = np.asarray(sorted({str(c) for c in allowed_course_ids}), dtype=object)
        if not len(self.items) or not len(allowed):
            return np.zeros(len(self.items), dtype=bool)
        return np.isin(self.course_ids, allowed)

    def dense_scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Max-over-passages cosine of every item (the MAX_SIM of the Qdrant collection, computed exactly)."""
        if not len(self.items):
            return np.zeros(0, dtype=np.float32)
        # einsum, not BLAS: multithreaded OpenBLAS sgemv took 20-40 ms here on a busy 2-core box (1-2 ms).
        return np.maximum.reduceat(np.einsum("ij,j->i", self.matrix, query_vector), self.starts)


def _top(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores among masked-in entries (masked-out ones can never be chosen)."""
    eligible = np.flatnonzero(mask)
    if not len(eligible):
        return eligible
    values = scores[eligible]
    if len(eligible) > k:
        part = np.argpartition(-values, k - 1)[:k]
        eligible, values = eligible[part], values[part]
    return eligible[np.argsort(-values, kind="stable")]


class SearchIndex:
    """Hybrid BM25 + dense search over content items, filtered to the courses a learner may see."""

    def __init__(
        self,
        *,
        client,
        embedder,
        server_mode: bool,
        fusion_config: FusionConfig | None = None,
        max_passages: int | None = None,
        local_path: Path | None = None,
    ) -> None:
        self._client = client
        # Cap on embedded passages per item (None: all); BM25 always reads the whole item.
        self.max_passages = max_passages
        self._embedder = embedder
        self._server_mode = server_mode
        self.fusion = fusion_config or FusionConfig()
        self._lock = threading.RLock()
        self._items: dict[str, ContentItem] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._snapshot: _Snapshot | None = None
        self._server_failed_at: float | None = None  # monotonic time of the last failed server query (or retry)
        self._server_state = threading.Lock()
        created = self._ensure_collection()
        self._load()
        # Why the index held nothing when opened (None: it held items): the content indexer rebuilds it from the
        # platform's content when the platform holds some, and sets ``rebuilding`` meanwhile.
        self.opened_empty: str | None = (
            "its collection was missing" if created else "its collection was empty" if not self._items else None
        )
        self.rebuilding: Rebuild | None = None
        # Whether the content indexer has checked this opened index against the platform's content (once per open).
        self.reconciled = False
        # Local mode: files that exist once the index is open; gone means the folder was removed under the process
        # (its writes then fail as "readonly database" until the index is opened again).
        self._local_files = [
            path for path in (local_path / "meta.json", local_path / "collection" / COLLECTION) if path.exists()
        ] if local_path is not None else []

    # -- storage ---------------------------------------------------------------------------------------
    def _ensure_collection(self) -> bool:
        """Create the collection when it is missing; True when it was."""
        from qdrant_client import models as qm

        if self._client.collection_exists(COLLECTION):
            return False
        self._client.create_collection(
            COLLECTION,
            vectors_config=qm.VectorParams(
                size=self._embedder.dimension,
                distance=qm.Distance.COSINE,
                multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
            ),
        )
        if self._server_mode:  # payload indexes have no effect in local mode
            self._client.create_payload_index(COLLECTION, "course_id", qm.PayloadSchemaType.KEYWORD)
        return True

    def storage_lost(self, *, ask_server: bool) -> str | None:
        """Why this open index no longer has its storage (None: it has): the local folder was removed, or the
        server's collection was deleted (asked only with ``ask_server``: it costs a request). A server that does not
        answer says nothing: its queries and writes fail on their own."""
        gone = [path for path in self._local_files if not path.exists()]
        if gone:
            return f"its folder lost {gone[0]} (removed while open)"
        if self._server_mode and ask_server:
            try:
                exists = self._client.collection_exists(COLLECTION)
            except Exception:  # noqa: BLE001 - down or hung: not a lost collection
                return None
            if not exists:
                return f"the collection '{COLLECTION}' is gone from the Qdrant server"
        return None

    def _load(self) -> None:
        offset = None
        while True:
            points, offset = self._client.scroll(
                COLLECTION, limit=1000, offset=offset, with_payload=True, with_vectors=True
            )
            for point in points:
                payload = point.payload or {}
                item = ContentItem(
                    item_id=payload["item_id"],
                    course_id=payload["course_id"],
                    title=payload.get("title", ""),
                    body=payload.get("body", ""),
                    kind=payload.get("kind", "page"),
                    url=payload.get("url"),
                )
                self._items[item.item_id] = item
                self._vectors[item.item_id] = np.asarray(point.vector, dtype=np.float32).reshape(-1, 384)
            if offset is None:
                break
        self._snapshot = None

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def item_ids(self) -> set[str]:
        with self._lock:
            return set(self._items)

    def upsert(self, items: Iterable[ContentItem], *, progress=None) -> int:
        """Embed (cached) and store items; an existing item id is replaced by its new text and course."""
        from qdrant_client import models as qm

        batch = [self._validated(item) for item in items]
        if not batch:
            return 0
        chunks = [
            (passages(item.title, item.body) or [item.title or item.item_id])[: self.max_passages]
            for item in batch
        ]
        flat = [text for item_chunks in chunks for text in item_chunks]
        vectors = self._embedder.encode(flat, progress=progress)
        per_item: list[np.ndarray] = []
        start = 0
        for item_chunks in chunks:
            per_item.append(vectors[start : start + len(item_chunks)])
            start += len(item_chunks)
        points = [
            qm.PointStruct(
                id=point_id(item.item_id),
                vector=item_vectors.tolist(),
                payload={
                    "item_id": item.item_id,
                    "course_id": item.course_id,
                    "title": item.title,
                    "body": item.body,
                    "kind": item.kind,
                    "url": item.url,
                },
            )
            for item, item_vectors in zip(batch, per_item, strict=True)
        ]
        with self._lock:
            for offset in range(0, len(points), 256):
                self._client.upsert(COLLECTION, points=points[offset : offset + 256], wait=True)
            for item, item_vectors in zip(batch, per_item, strict=True):
                self._items[item.item_id] = item
                self._vectors[item.item_id] = item_vectors
            self._snapshot = None
        return len(batch)

    def delete(self, item_ids: Iterable[str]) -> int:
        """Remove items (unknown ids are ignored); returns how many were present."""
        from qdrant_client import models as qm

        ids = [str(i) for i in item_ids]
        with self._lock:
            present = [i for i in ids if i in self._items]
            if ids:
                self._client.delete(
                    COLLECTION, points_selector=qm.PointIdsList(points=[point_id(i) for i in ids]), wait=True
                )
            for item_id in present:
                self._items.pop(item_id, None)
                self._vectors.pop(item_id, None)
            self._snapshot = None
        return len(present)

    @staticmethod
    def _validated(item: ContentItem) -> ContentItem:
        if not item.item_id or not item.course_id:
            raise InvalidInput(f"content item {item!r} needs an item_id and a course_id to be indexed")
        return ContentItem(
            item_id=str(item.item_id),
            course_id=str(item.course_id),
            title=item.title or "",
            body=item.body or "",
            kind=item.kind,
            url=item.url,
        )

    def snapshot(self) -> _Snapshot:
        with self._lock:
            if self._snapshot is None:
                ids = sorted(self._items)
                self._snapshot = _Snapshot([self._items[i] for i in ids], [self._vectors[i] for i in ids])
            return self._snapshot

    # -- querying --------------------------------------------------------------------------------------
    def candidates(
        self,
        query: str,
        *,
        allowed_course_ids: Iterable[str],
        k: int | None = None,
        query_vector: np.ndarray | None = None,
    ) -> tuple[_Snapshot, Candidates]:
        """Each retriever's top-k among allowed items, with both scores per candidate."""
        k = k or self.fusion.candidates
        snap = self.snapshot()
        mask = snap.allowed_mask(allowed_course_ids)
        if not mask.any() or not query.strip():
            empty = np.zeros(0)
            return snap, Candidates(np.zeros(0, dtype=np.int64), empty, empty)
        if query_vector is None:
            query_vector = self._embedder.encode_query(query)
        bm25_all = snap.lexical.scores(query)
        bm25_top = _top(bm25_all, mask & (bm25_all > 0), k)
        dense = self._server_dense_or_none(query_vector, snap, mask, k) if self._server_mode else None
        if dense is None:
            dense_all = snap.dense_scores(query_vector)
            dense_top = _top(dense_all, mask, k)
            dense_values = dense_all[dense_top]
        else:
            dense_top, dense_values = dense
        positions = np.union1d(bm25_top, dense_top).astype(np.int64)
        bm25 = np.full(len(positions), np.nan)
        dense = np.full(len(positions), np.nan)
        bm25[np.searchsorted(positions, bm25_top)] = bm25_all[bm25_top]
        dense[np.searchsorted(positions, dense_top)] = dense_values
        return snap, Candidates(positions, bm25, dense)

    def _server_dense_or_none(
        self, query_vector: np.ndarray, snap: _Snapshot, mask: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The server's dense candidates, or None when it failed (now or within the retry window): the caller
        scans the in-process vectors instead."""
        with self._server_state:
            failed_at = self._server_failed_at
            if failed_at is not None:
                if time.monotonic() - failed_at < SERVER_RETRY_AFTER_S:
                    return None
                # This query tries the server again; the ones arriving while it waits scan in process meanwhile.
                self._server_failed_at = time.monotonic()
        try:
            found = self._server_dense(query_vector, snap, mask, k)
        except Exception as exc:  # noqa: BLE001 - any failure of the server: the in-process scan answers
            if failed_at is None:
                log.warning("Qdrant server query failed (%s: %s); dense candidates come from the in-process scan, "
                            "the server is tried again every %.0f s", type(exc).__name__, exc, SERVER_RETRY_AFTER_S)
            self._server_failed_at = time.monotonic()
            return None
        if failed_at is not None:
            log.info("Qdrant server answers queries again")
        self._server_failed_at = None
        return found

    def _server_dense(
        self, query_vector: np.ndarray, snap: _Snapshot, mask: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        from qdrant_client import models as qm

        allowed = sorted({str(c) for c in snap.course_ids[mask]})
        response = self._client.query_points(
            COLLECTION,
            query=[query_vector.tolist()],
            query_filter=qm.Filter(must=[qm.FieldCondition(key="course_id", match=qm.MatchAny(any=allowed))]),
            limit=k,
            with_payload=["item_id"],
        )
        index = {item.item_id: pos for pos, item in enumerate(snap.items)}
        found = [
            (index[p.payload["item_id"]], p.score) for p in response.points if p.payload["item_id"] in index
        ]
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        positions, scores = zip(*found, strict=True)
        return np.asarray(positions, dtype=np.int64), np.asarray(scores, dtype=np.float64)

    def fuse(self, cands: Candidates, config: FusionConfig | None = None) -> np.ndarray:
        config = config or self.fusion
        if config.method is FusionMethod.rrf:
            return fusion.rrf(cands.bm25, cands.dense, alpha=config.alpha)
        return fusion.convex(cands.bm25, cands.dense, config.alpha)

    def search(
        self,
        query: str,
        *,
        allowed_course_ids: Iterable[str],
        limit: int = 10,
        config: FusionConfig | None = None,
    ) -> list[SearchHit]:
        """Hybrid top-``limit`` items among the allowed courses, best first."""
        allowed = {str(c) for c in allowed_course_ids}
        snap, cands = self.candidates(query, allowed_course_ids=allowed)
        if not len(cands.positions):
            return []
        fused = self.fuse(cands, config)
        bm25_norm, dense_norm = fusion.minmax(cands.bm25), fusion.minmax(cands.dense)
        hits: list[SearchHit] = []
        for idx in np.argsort(-fused, kind="stable"):
            item = snap.items[cands.positions[idx]]
            if item.course_id not in allowed:  # defence in depth: never leak, whatever a retriever did
                continue
            lexical = bool(cands.bm25[idx] > 0)  # NaN (not a BM25 candidate) compares False
            similarity = None if np.isnan(cands.dense[idx]) else float(cands.dense[idx])
            if not lexical and (similarity is None or similarity < MIN_SIMILARITY_WITHOUT_A_SHARED_WORD):
                continue  # nothing in common with the query: not an answer, however it ranks among the rest
            hits.append(
                SearchHit(
                    item_id=item.item_id,
                    course_id=item.course_id,
                    title=item.title,
                    score=float(fused[idx]),
                    bm25_score=float(bm25_norm[idx]),
                    dense_score=float(dense_norm[idx]),
                    url=item.url,
                    similarity=similarity,
                    lexical_match=lexical,
                )
            )
            if len(hits) == limit:
                break
        return hits
