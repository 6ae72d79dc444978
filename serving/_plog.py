"""The prediction log: every answer's model inputs, model version, output and latency, for monitoring.

Format (agreed with monitoring, read only by ``pipelines.monitoring``): one JSON object per line in
``<data_dir>/predictions/<model_name>/<YYYY-MM-DD>-<pid>.jsonl``. One file per worker process, so several
workers never interleave partial lines.

A line is one answer. ``features`` holds the inputs of a one-row model (risk). A recommendation list is one line
of model ``recommender`` (entity: user and course; output: arm, cold start, ranker version, listed items); when the
learned ranker scored it (treatment arm), the line also carries ``inputs``: the ranker's rows for a uniform sample
of the candidates it scored (``recommender._recommend.service.LOGGED_CANDIDATES``, 8 of the items the learner has
not opened)::

    "inputs": {"sample": "uniform_candidates", "candidates": 287,   # drawn from the 287 not-yet-opened items
               "columns": ["penetration", "trend_7d", …],              # the ranker's features, model-input order
               "items": ["i12", …], "scores": [0.031, …],             # per sampled row
               "rows": [[0.41, 0.12, …], …]}                          # float32 as fed to ONNX (null: NaN)

Lines without ``inputs`` (control and cold-start lists, lists logged before it existed) read as before.

The request path only appends a tuple to a queue (~1 µs); a daemon thread serialises and writes in batches, so
disk and JSON encoding never add to a request's latency.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recommender.data import RankerInputs, RecommendationList

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
RECOMMENDER_MODEL = "recommender"
_FLUSH_SECONDS = 0.5
_MAX_QUEUE = 100_000  # beyond this, drop (and count) rather than grow without bound under a stuck disk
_NO_FEATURES: list[str] = []
_EMPTY = np.empty(0)
_FLOAT32 = "%.9g"  # 9 significant digits: every float32 value reads back exactly


class PredictionLog:
    """Asynchronous JSONL writer; ``record`` never blocks and never raises."""

    def __init__(self, data_path: Path) -> None:
        self.root = data_path / PREDICTIONS_DIR
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one drainer at a time: batches of one file never interleave
        self.dropped = 0
        self.written = 0
        self._key_cache: dict[int, tuple[list[str], list[str]]] = {}
        self._column_cache: dict[int, tuple[tuple[str, ...], str]] = {}
        self._dirs: set[Path] = set()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, *, model_name: str, model_version: str, entity: dict, feature_names: list[str],
               features, output: dict, latency_ms: float, request_id: str | None = None,
               inputs: RankerInputs | None = None) -> None:
        """Queue one answer; ``inputs``: a list's sampled model inputs (see the module docstring)."""
        if self._queue.qsize() >= _MAX_QUEUE:
            self.dropped += 1
            return
        self._queue.put((datetime.now(UTC), model_name, model_version, entity, feature_names, features, output,
                         latency_ms, request_id, inputs))

    def record_recommendations(self, served: RecommendationList, *, latency_ms: float) -> None:
        """Queue one served list (``recommender.api.recommend``'s answer) as model ``recommender``, with the
        ranker's sampled inputs when the ranker scored it."""
        self.record(
            model_name=RECOMMENDER_MODEL, model_version=served.experiment,
            entity={"user_id": served.user_id, "course_id": served.course_id}, feature_names=_NO_FEATURES,
            features=_EMPTY, output={"variant": served.variant.value, "cold_start": served.cold_start,
                                     "model_version": served.model_version,
                                     "items": [item.item_id for item in served.items]},
            latency_ms=latency_ms, inputs=served.ranker_inputs)

    def _keys(self, names: list[str]) -> list[str]:
        # The '"name":' prefixes of a model's features, encoded once per feature list (not per record).
        cached = self._key_cache.get(id(names))
        if cached is None or cached[0] is not names:
            cached = self._key_cache[id(names)] = (names, [json.dumps(name) + ":" for name in names])
        return cached[1]

    def _columns(self, names: tuple[str, ...]) -> str:
        # The column list of a model's sampled inputs, encoded once per column tuple (not per record).
        cached = self._column_cache.get(id(names))
        if cached is None or cached[0] is not names:
            cached = self._column_cache[id(names)] = (names, json.dumps(list(names)))
        return cached[1]

    def _inputs(self, inputs: RankerInputs) -> str:
        rows = np.asarray(inputs.rows)
        width = len(inputs.columns)
        if rows.shape != (len(inputs.item_ids), width) or len(inputs.scores) != len(inputs.item_ids):
            raise ValueError(f"sampled inputs: rows {rows.shape}, {len(inputs.item_ids)} items and "
                             f"{len(inputs.scores)} scores for {width} columns")
        values = _numbers(rows.ravel().tolist())
        matrix = ",".join("[" + ",".join(values[start:start + width]) + "]" for start in range(0, len(values), width))
        scores = ",".join(_numbers(np.asarray(inputs.scores, dtype=np.float64).tolist()))
        return (f'"inputs": {{"sample": "uniform_candidates", "candidates": {int(inputs.candidates)}, '
                f'"columns": {self._columns(inputs.columns)}, "items": {json.dumps(list(inputs.item_ids))}, '
                f'"scores": [{scores}], "rows": [{matrix}]}}')

    def _line(self, item) -> tuple[str, str]:
        ts, model_name, model_version, entity, names, values, output, latency_ms, request_id, inputs = item
        # Floats' repr is valid JSON; NaN/inf (absent features) become null. ~3x cheaper than json.dumps of a dict.
        features = ",".join(key + (repr(value) if math.isfinite(value) else "null")
                            for key, value in zip(self._keys(names), values.tolist(), strict=True))
        head = json.dumps({"ts": ts.isoformat(), "model_name": model_name, "model_version": model_version,
                           "request_id": request_id, "entity": entity, "output": output,
                           "latency_ms": round(latency_ms, 3)}, allow_nan=False)
        sampled = "" if inputs is None else ", " + self._inputs(inputs)
        return (f"{model_name}/{ts:%Y-%m-%d}-{os.getpid()}.jsonl",
                f'{head[:-1]}, "features": {{{features}}}{sampled}}}')

    def _drain(self) -> None:
        with self._lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        batches: dict[str, list[str]] = {}
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                name, line = self._line(item)
            except (TypeError, ValueError) as exc:  # one bad record must not stop the log
                log.warning("prediction log: skipped a record that cannot be encoded: %s", exc)
                continue
            batches.setdefault(name, []).append(line)
            # Hand the GIL back after every record: encoding a batch of a few hundred records takes milliseconds,
            # and without this the event loop waits up to the interpreter's 5 ms switch interval for it — that
            # was a visible share of the c=1 p99.
            time.sleep(0)
        for name, lines in batches.items():
            path = self.root / name
            try:
                if path.parent not in self._dirs:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._dirs.add(path.parent)
                with path.open("a") as handle:
                    handle.write("\n".join(lines) + "\n")
                self.written += len(lines)
            except OSError as exc:
                self._dirs.discard(path.parent)  # recreated on the next drain if it was removed
                self.dropped += len(lines)
                log.error("prediction log: cannot write %s (%s); %d records dropped", path, exc, len(lines))

    def _run(self) -> None:
        while not self._stop.wait(_FLUSH_SECONDS):
            self._drain()
        self._drain()

    def flush(self) -> None:
        """Write everything queued so far (used on shutdown and by tests)."""
        self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _numbers(values: list[float]) -> list[str]:
    """JSON numbers at float32 precision (``%g`` output is valid JSON); NaN/inf (absent values) become null."""
    return [_FLOAT32 % value if math.isfinite(value) else "null" for value in values]
