"""Online feature reads for serving, straight from Feast's SQLite online store — without importing Feast.

``import feast`` costs ~12 s of CPU and pulls in torch, which the serving process must never load. The SQLite
online store is a plain table per feature view (``<project>_<view>``: ``entity_key`` blob, ``feature_name``,
``value`` (a serialized ``ValueProto``), ``value_text``, timestamps), keyed by Feast's entity-key serialization
v3. This module builds exactly those keys and reads exactly those rows; ``tests/serving`` checks it against
``FeatureStore.get_online_features`` on the same store, so the two cannot drift apart silently.

What a FeatureService contains and how missing values are filled come from ``features.api`` (the one
definition); the fill policy is evaluated once at startup into a per-feature default vector.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

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


class OnlineFeatureReader:
    """Reads one FeatureService's features for a (student, course) registration in one SQL round trip."""

    def __init__(self, *, db_path: Path, project: str, service: str) -> None:
        from features import api as features_api

        if not db_path.exists():
            raise Unavailable(f"the Feast online store {db_path} does not exist; run `learnloop features build` "
                              "and `learnloop features materialize` first")
        self.service = service
        self.feature_names = features_api.feature_names(service)
        wanted = {name: index for index, name in enumerate(self.feature_names)}
        views = []
        for view in features_api.view_names():
            slots = {name: wanted[name] for name in features_api.view_features(view) if name in wanted}
            if slots:
                views.append(ViewRead(view=view, table=f"{project}_{view}",
                                      join_key=features_api.view_join_key(view), slots=slots))
        self.views = tuple(views)
        self.join_keys = features_api.service_join_keys(service)
        # The fill policy (features.api.fill_matrix, the one shared with training sets), evaluated once on an
        # all-missing row: each feature's value for "absent" (0 for availability flags, NaN otherwise).
        self.missing_defaults = features_api.fill_matrix(np.full((1, len(self.feature_names)), np.nan), service)[0]
        self._fill_mask = ~np.isnan(self.missing_defaults)
        self.uri = f"file:{db_path}?mode=ro"
        self._local = threading.local()
        self._sql = " UNION ALL ".join(
            f"SELECT {i}, feature_name, value_text, value FROM \"{v.table}\" WHERE entity_key = ?"
            for i, v in enumerate(self.views))
        self._check_tables()

    def _connection(self) -> sqlite3.Connection:
        # One read-only connection per thread: sqlite3 connections must not be shared across threads.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.uri, uri=True, timeout=0.5, check_same_thread=True)
            self._local.conn = conn
        return conn

    def _check_tables(self) -> None:
        present = {row[0] for row in self._connection().execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [v.table for v in self.views if v.table not in present]
        if missing:
            raise Unavailable(f"the online store lacks tables {', '.join(missing)}; run `learnloop features apply` "
                              "and materialize before serving")

    def entity_values(self, *, student_id: int, course_id: str) -> dict[str, str | int]:
        """Join-key values of a (student, course) request, for every entity the service needs."""
        values: dict[str, str | int] = {"student_course": f"{student_id}:{course_id}", "id_student": int(student_id),
                                        "course": course_id}
        unknown = [key for key in self.join_keys if key not in values]
        if unknown:
            raise InvalidInput(f"FeatureService {self.service} needs join keys {unknown} a risk request cannot give")
        return values

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

    def fill(self, raw: np.ndarray) -> np.ndarray:
        """Apply the shared missing-value policy (``features.api.fill_matrix``) to one raw row, without its
        per-call bookkeeping: a precomputed mask and default vector."""
        filled = raw.copy()
        absent = np.isnan(filled) & self._fill_mask
        filled[absent] = self.missing_defaults[absent]
        return filled

    def view_of(self, join_key: str) -> list[str]:
        """The service's views keyed by ``join_key``."""
        return [v.view for v in self.views if v.join_key == join_key]
