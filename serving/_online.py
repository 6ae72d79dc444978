"""Online feature reads for serving, straight from Feast's online store (SQLite or Redis) — without importing Feast.

``import feast`` costs ~12 s of CPU and pulls in torch, which the serving process must never load; and Feast's
``get_online_features`` spends ~1.5 ms of Python building a generic response for one entity. This module
reads the stores' own layouts directly:

* **SQLite**: a table per feature view (``<project>_<view>``: ``entity_key`` blob, ``feature_name``, ``value``
  (a serialized ``ValueProto``), ``value_text``, timestamps), keyed by Feast's entity-key serialization v3.
  One entity is one prepared ``UNION ALL`` statement over the service's views; a batch is one
  ``IN (…)`` statement per view.
* **Redis**: a hash per entity key (serialized key + project) holding ``mmh3("<view>:<feature>")`` →
  ``ValueProto`` bytes and ``_ts:<view>`` (absent = the view has no row). One pipeline of ``HMGET``s. The read
  runs on the model service's event loop, so a Redis that is down must fail fast: one immediate retry on a broken
  connection (a restarted Redis), none on a timeout, no backoff, and after a failure the reader answers
  ``Unavailable`` without asking Redis for ``REDIS_RETRY_AFTER_S`` (redis-py's default, three retries with
  exponential backoff, held the loop 3-10 s per request and stalled every other route of the worker).

Both build exactly Feast's keys and read exactly its rows; ``tests/features`` (every feature of every
FeatureService, SQLite and the real Redis) and ``tests/serving`` check them against
``FeatureStore.get_online_features`` and the offline store, so they cannot drift apart silently.

What a FeatureService contains and which features are availability flags come from ``features.data`` (the
catalog, without Feast); the fill policy becomes a per-feature default vector once at startup.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learnloop.errors import InvalidInput, Unavailable

_STRING = 2  # feast.types.Value_pb2.ValueType.STRING
_INT64 = 4  # feast.types.Value_pb2.ValueType.INT64


def serialize_entity_key(join_key: str, value: str | int) -> bytes:
    """Feast's ``serialize_entity_key`` (version 3) for one join key: count, key, then typed value."""
    key = join_key.encode()
    if isinstance(value, str):
        value_type, payload = _STRING, value.encode()
    else:
        value_type, payload = _INT64, struct.pack("<q", int(value))
    return b"".join((struct.pack("<I", 1), struct.pack("<II", _STRING, len(key)), key,
                     struct.pack("<II", value_type, len(payload)), payload))


def decode_value(value_text: str | None, value_blob: bytes | None) -> float:
    """A stored feature value as float (NaN for null). ``value_text`` is ``str(number)`` for numeric values;
    older rows carry only the ``ValueProto`` bytes, parsed here for the scalar numeric cases."""
    if value_text is not None:
        try:
            return float(value_text)
        except ValueError:
            return {"True": 1.0, "False": 0.0}.get(value_text, math.nan)
    if not value_blob:
        return math.nan
    tag = value_blob[0]
    if tag == 0x29 and len(value_blob) >= 9:  # field 5 double_val, fixed64
        return struct.unpack_from("<d", value_blob, 1)[0]
    if tag == 0x35 and len(value_blob) >= 5:  # field 6 float_val, fixed32
        return struct.unpack_from("<f", value_blob, 1)[0]
    if tag in (0x18, 0x20, 0x38):  # int32_val / int64_val / bool_val, varint
        result, shift = 0, 0
        for byte in value_blob[1:]:
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if result >= 1 << 63:
            result -= 1 << 64
        return float(result)
    return math.nan


@dataclass(frozen=True)
class ViewRead:
    """One feature view of a FeatureService: its table, the entity it is keyed by, its features' slots."""

    view: str
    table: str
    join_key: str
    slots: dict[str, int]  # feature name -> position in the model-input vector


@dataclass(frozen=True)
class OnlineRow:
    """The raw (unfilled) features of one request plus which views had a row for its entities."""

    values: np.ndarray  # float64, NaN where the store holds nothing
    views_found: frozenset[str]


class _ServiceLayout:
    """What a FeatureService reads (views, slots, join keys) and the shared fill policy, resolved once."""

    def __init__(self, *, project: str, service: str) -> None:
        from features.data import service_layout  # plain data: no Feast, no store building

        layout = service_layout(service)
        self.project, self.service = project, service
        self.feature_names = list(layout.feature_names)
        wanted = {name: index for index, name in enumerate(self.feature_names)}
        slots_of: dict[str, dict[str, int]] = {}
        keys_of: dict[str, str] = {}
        for view in layout.views:
            slots_of.setdefault(view.view, {}).update({name: wanted[name] for name in view.features})
            keys_of[view.view] = view.join_key
        self.views = tuple(ViewRead(view=view, table=f"{project}_{view}", join_key=keys_of[view], slots=slots)
                           for view, slots in slots_of.items())
        self.join_keys = list(layout.join_keys)
        # The fill policy shared with training sets (features.api.fill_matrix: availability flags read
        # "absent" as 0, everything else stays NaN), as a per-feature default vector computed once.
        self.missing_defaults = np.array([0.0 if name in layout.flag_features else np.nan
                                          for name in self.feature_names])
        self._fill_mask = ~np.isnan(self.missing_defaults)

    def entity_values(self, *, student_id: int, course_id: str) -> dict[str, str | int]:
        """Join-key values of a (student, course) request, for every entity the service needs."""
        values: dict[str, str | int] = {"student_course": f"{student_id}:{course_id}", "id_student": int(student_id),
                                        "course": course_id}
        unknown = [key for key in self.join_keys if key not in values]
        if unknown:
            raise InvalidInput(f"FeatureService {self.service} needs join keys {unknown} a risk request cannot give")
        return values

    def fill(self, raw: np.ndarray) -> np.ndarray:
        """Apply the shared missing-value policy (``features.api.fill_matrix``) to raw rows (one row or a
        matrix), without its per-call bookkeeping: a precomputed mask and default vector."""
        filled = raw.copy()
        absent = np.isnan(filled) & self._fill_mask
        filled[absent] = np.broadcast_to(self.missing_defaults, filled.shape)[absent]
        return filled

    def view_of(self, join_key: str) -> list[str]:
        """The service's views keyed by ``join_key``."""
        return [v.view for v in self.views if v.join_key == join_key]

    def _check_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            missing = [key for key in self.join_keys if key not in row]
            if missing:
                raise InvalidInput(f"entity row {row} lacks {', '.join(missing)} (needed by {self.service})")

    def read(self, *, student_id: int, course_id: str) -> OnlineRow:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class OnlineFeatureReader(_ServiceLayout):
    """Reads one FeatureService's features from Feast's SQLite online store (one prepared statement per read)."""

    def __init__(self, *, db_path: Path, project: str, service: str) -> None:
        if not Path(db_path).exists():
            raise Unavailable(f"the Feast online store {db_path} does not exist; run `learnloop features build` "
                              "and `learnloop features materialize` first")
        super().__init__(project=project, service=service)
        self.uri = f"file:{db_path}?mode=ro"
        self._local = threading.local()
        self._sql = " UNION ALL ".join(
            f"SELECT {i}, feature_name, value_text, value FROM \"{v.table}\" WHERE entity_key = ?"
            for i, v in enumerate(self.views))
        self._check_tables()

    def _connection(self) -> sqlite3.Connection:
        # One read-only connection per thread: sqlite3 connections must not be shared across threads. Its
        # statement cache keeps each distinct SQL text prepared (sqlite3's cached_statements).
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.uri, uri=True, timeout=0.5, check_same_thread=True, cached_statements=256)
            # Reads are random index → row lookups across the file: map it (no read() syscall per page) and
            # keep a larger page cache than SQLite's 2 MB default.
            conn.execute("PRAGMA mmap_size=1073741824")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
        return conn

    def _check_tables(self) -> None:
        present = {row[0] for row in self._connection().execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [v.table for v in self.views if v.table not in present]
        if missing:
            raise Unavailable(f"the online store lacks tables {', '.join(missing)}; run `learnloop features build` "
                              "(applies the repo and materializes) before serving")

    def read(self, *, student_id: int, course_id: str) -> OnlineRow:
        """Raw feature values (NaN = absent) and the views that had a row. Raises Unavailable when the store
        cannot be read (locked beyond the timeout, file gone)."""
        entity = self.entity_values(student_id=student_id, course_id=course_id)
        params = [serialize_entity_key(v.join_key, entity[v.join_key]) for v in self.views]
        try:
            rows = self._connection().execute(self._sql, params).fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"online feature read failed: {exc}; retry shortly") from exc
        values = np.full(len(self.feature_names), np.nan)
        found = set()
        for view_index, feature_name, value_text, value_blob in rows:
            view = self.views[view_index]
            found.add(view.view)
            slot = view.slots.get(feature_name)
            if slot is not None:
                values[slot] = decode_value(value_text, value_blob)
        return OnlineRow(values=values, views_found=frozenset(found))

    def read_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Raw features (len(rows) × features, NaN = absent) for entity rows carrying every join key of the
        service (e.g. ``student_course``, ``id_student``, ``course``; ``id_site`` for recommendations).
        One ``IN (…)`` statement per view."""
        self._check_rows(rows)
        matrix = np.full((len(rows), len(self.feature_names)), np.nan)
        conn = self._connection()
        for view in self.views:
            where: dict[bytes, list[int]] = {}
            for i, row in enumerate(rows):
                where.setdefault(serialize_entity_key(view.join_key, row[view.join_key]), []).append(i)
            keys = list(where)
            # Null values (no value_text, empty ValueProto) stay NaN: skipping them in SQL saves most of the
            # rows of sparse views (clicks exist for 3 of 22 presentations).
            sql = (f"SELECT entity_key, feature_name, value_text, value FROM \"{view.table}\" "
                   f"WHERE entity_key IN ({','.join('?' * len(keys))}) "
                   "AND (value_text IS NOT NULL OR length(value) > 0)")
            try:
                found = conn.execute(sql, keys).fetchall()
            except sqlite3.Error as exc:
                raise Unavailable(f"online feature read failed: {exc}; retry shortly") from exc
            for key, feature_name, value_text, value_blob in found:
                slot = view.slots.get(feature_name)
                if slot is not None:
                    value = decode_value(value_text, value_blob)
                    for i in where[key]:
                        matrix[i, slot] = value
        return matrix


def redis_field(view: str, feature: str) -> bytes:
    """Feast's Redis hash field of a feature: murmur3-32 (unsigned, little endian) of ``"<view>:<feature>"``."""
    import mmh3

    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def _redis_client(connection: str):
    """A client for Feast's connection string form ``host:port[,password=…][,ssl=true][,db=N]``."""
    import redis

    address, *options = [part.strip() for part in connection.split(",") if part.strip()]
    host, _, port = address.rpartition(":")
    kwargs: dict[str, Any] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key == "password":
            kwargs["password"] = value
        elif key == "ssl":
            kwargs["ssl"] = value.lower() == "true"
        elif key == "db":
            kwargs["db"] = int(value)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One immediate retry, on a dropped connection only (Redis restarted: the pooled socket is dead); a timeout is
    # not retried. The default (3 retries, exponential backoff up to 10 s) blocked the caller for seconds.
    return redis.Redis(host=host or "127.0.0.1", port=int(port or 6379), socket_timeout=0.5,
                       socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1, (redis.ConnectionError,)), **kwargs)


REDIS_RETRY_AFTER_S = 2.0  # after a failed read, answer Unavailable for this long without asking Redis


class RedisFeatureReader(_ServiceLayout):
    """Reads one FeatureService's features from Feast's Redis online store (one pipelined round trip)."""

    def __init__(self, *, connection: str, project: str, service: str) -> None:
        super().__init__(project=project, service=service)
        self._client = _redis_client(connection)
        self._project = project.encode()
        self._failed: tuple[float, str] | None = None  # (monotonic time, error) of the last failed read
        # Per view: its hash fields (features in slot order, then the view's timestamp field).
        self._fields = []
        for view in self.views:
            names = list(view.slots)
            self._fields.append(([redis_field(view.view, name) for name in names] + [f"_ts:{view.view}".encode()],
                                 [view.slots[name] for name in names]))

    def _fetch(self, keyed: list[tuple[int, bytes]]) -> list[list[bytes | None]]:
        import redis

        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < REDIS_RETRY_AFTER_S:
            raise Unavailable(f"online feature read from Redis failed {time.monotonic() - failed[0]:.1f} s ago "
                              f"({failed[1]}); retry shortly")
        pipe = self._client.pipeline(transaction=False)
        for view_index, key in keyed:
            pipe.hmget(key + self._project, self._fields[view_index][0])
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            self._failed = (time.monotonic(), str(exc))
            raise Unavailable(f"online feature read from Redis failed: {exc}; retry shortly") from exc
        self._failed = None
        return replies

    def read(self, *, student_id: int, course_id: str) -> OnlineRow:
        """Raw feature values (NaN = absent) and the views that had a row (``_ts:<view>`` present)."""
        entity = self.entity_values(student_id=student_id, course_id=course_id)
        replies = self._fetch([(i, serialize_entity_key(v.join_key, entity[v.join_key]))
                               for i, v in enumerate(self.views)])
        values = np.full(len(self.feature_names), np.nan)
        found = set()
        for (_, slots), view, reply in zip(self._fields, self.views, replies, strict=True):
            if reply[-1] is None:
                continue
            found.add(view.view)
            for slot, blob in zip(slots, reply, strict=False):
                if blob is not None:
                    values[slot] = decode_value(None, blob)
        return OnlineRow(values=values, views_found=frozenset(found))

    def read_rows(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Like ``OnlineFeatureReader.read_rows``: one pipeline of ``HMGET`` per (view, distinct entity)."""
        self._check_rows(rows)
        matrix = np.full((len(rows), len(self.feature_names)), np.nan)
        keyed, targets = [], []
        for view_index, view in enumerate(self.views):
            where: dict[bytes, list[int]] = {}
            for i, row in enumerate(rows):
                where.setdefault(serialize_entity_key(view.join_key, row[view.join_key]), []).append(i)
            for key, indices in where.items():
                keyed.append((view_index, key))
                targets.append(indices)
        for (view_index, _), indices, reply in zip(keyed, targets, self._fetch(keyed), strict=True):
            if reply[-1] is None:
                continue
            for slot, blob in zip(self._fields[view_index][1], reply, strict=False):
                if blob is not None:
                    value = decode_value(None, blob)
                    matrix[indices, slot] = value
        return matrix


def open_online_reader(*, service: str, online_store: str, project: str, sqlite_path: Path | None = None,
                       redis_connection: str | None = None) -> OnlineFeatureReader | RedisFeatureReader:
    """The reader for the configured online store type (``sqlite`` or ``redis``)."""
    if online_store == "sqlite":
        if sqlite_path is None:
            raise InvalidInput("the SQLite online reader needs sqlite_path")
        return OnlineFeatureReader(db_path=Path(sqlite_path), project=project, service=service)
    if online_store == "redis":
        if not redis_connection:
            raise InvalidInput("the Redis online reader needs redis_connection (host:port)")
        return RedisFeatureReader(connection=redis_connection, project=project, service=service)
    raise InvalidInput(f"online store {online_store!r} has no direct reader; use sqlite or redis")
