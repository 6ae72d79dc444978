"""Champion models in memory: an ONNX Runtime session per model, scoring from online features, hot swaps.

Request path (what the latency budget pays for): one SQLite read of the registration's features, the fill policy
as a vectorised mask, one ``InferenceSession.run`` on a single row. No pandas, no thread hop, no Feast import.
A swap builds and warms the new session off the request path, then replaces one dict entry — requests that
already hold the old model finish on it; the next one gets the new version.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from learnloop.errors import InvalidInput, NotFound, Unavailable
from learnloop.settings import Settings
from serving._online import OnlineFeatureReader, OnlineRow, RedisFeatureReader, open_online_reader
from serving.data import PredictionStatus, RiskRefusal

log = logging.getLogger(__name__)

RISK_MODEL = "risk"
FEAST_PROJECT = "learnloop"  # features.api.DEFAULT_PROJECT
_FULL_CHECK_EVERY = 12  # polls between two registry lookups even when its files look unchanged


def ort_session(onnx_bytes: bytes):
    """An InferenceSession tuned for single-row requests.

    One intra-op thread and sequential execution: a 200-tree ensemble on one row runs in ~30 µs, and ORT's
    default thread pool (one spinning thread per core) costs more in wake-ups than it saves — and steals the
    core the event loop needs at concurrency 16.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class RiskScore:
    risk_score: float
    status: PredictionStatus
    model_version: str
    reason: str | None
    features: np.ndarray  # the filled model inputs, in FeatureService order (for the prediction log)


@dataclass
class LoadedModel:
    """One champion version ready to score."""

    name: str
    version: str
    schema: object  # models.data.ModelSchema
    session: object
    reader: OnlineFeatureReader | RedisFeatureReader
    loaded_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        from models.data import MISSING_CATEGORY, InputKind

        names = self.reader.feature_names
        positions = {name: index for index, name in enumerate(names)}
        missing = [item.name for item in self.schema.inputs if item.name not in positions]
        if missing:
            raise InvalidInput(f"model {self.name} v{self.version} needs {missing}, which FeatureService "
                               f"{self.reader.service} does not serve; retrain on that FeatureService")
        self._inputs = [(item.name, positions[item.name], item.kind is InputKind.numeric) for item in self.schema.inputs]
        self._missing_category = MISSING_CATEGORY
        self._outputs = [self.schema.probability_output]
        self._positive = self.schema.positive_class_index
        self._bound = all(numeric for _, _, numeric in self._inputs)
        if self._bound:
            # One [1, 1] float32 array per input, bound once to the session (OrtValues share their memory):
            # a request writes its values in place and runs the binding. 7x cheaper than passing a feed dict
            # of 74 fresh arrays, which ORT converts input by input on every run.
            import onnxruntime as ort

            self._positions = np.array([position for _, position, _ in self._inputs], dtype=np.intp)
            self._cells = [np.zeros((1, 1), dtype=np.float32) for _ in self._inputs]
            self._binding = self.session.io_binding()
            for (name, _, _), cell in zip(self._inputs, self._cells, strict=True):
                self._binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(cell))
            self._binding.bind_output(self.schema.probability_output)
        self._run_lock = threading.Lock()  # the bound cells are shared state: one run at a time per model
        student_course_views = set(self.reader.view_of("student_course"))
        self._registration_views = frozenset(student_course_views)
        self._student_views = frozenset(self.reader.view_of("id_student"))
        self._course_views = frozenset(self.reader.view_of("course"))
        # Warm the session (first run allocates) so the first real request after a swap is not slow.
        self.probability(self.reader.fill(np.full(len(names), np.nan)))

    def probability(self, filled: np.ndarray) -> float:
        """P(positive class) for one filled row in FeatureService order."""
        if self._bound:
            values = filled[self._positions].astype(np.float32).tolist()
            with self._run_lock:
                for cell, value in zip(self._cells, values, strict=True):
                    cell[0, 0] = value
                self.session.run_with_iobinding(self._binding)
                probabilities = self._binding.copy_outputs_to_cpu()[0]
            return float(probabilities[0, self._positive])
        feeds = {}
        for name, position, numeric in self._inputs:
            value = filled[position]
            if numeric:
                feeds[name] = np.array([[value]], dtype=np.float32)
            else:
                label = self._missing_category if math.isnan(value) else f"{value:g}"
                feeds[name] = np.array([[label]], dtype=object)
        (probabilities,) = self.session.run(self._outputs, feeds)
        return float(probabilities[0, self._positive])

    def refusal(self, row: OnlineRow) -> RiskRefusal | None:
        """Why a registration cannot be scored, judged from which views hold rows for its entities."""
        found = row.views_found
        if found & self._registration_views:
            return None
        if self._course_views and not found & self._course_views:
            return RiskRefusal.unknown_course
        if self._student_views and not found & self._student_views:
            return RiskRefusal.unknown_student
        return RiskRefusal.not_enrolled

    def score(self, *, student_id: int, course_id: str) -> RiskScore:
        row = self.reader.read(student_id=student_id, course_id=course_id)
        refusal = self.refusal(row)
        if refusal is not None:
            raise RiskRefused(refusal, _REFUSAL_TEXT[refusal].format(student_id=student_id, course_id=course_id))
        filled = self.reader.fill(row.values)
        risk = self.probability(filled)
        if not math.isfinite(risk):
            raise Unavailable(f"model {self.name} v{self.version} produced a non-finite score; check the model")
        absent = sorted(self._registration_views - row.views_found)
        if absent:
            return RiskScore(risk, PredictionStatus.cold_start, self.version,
                             f"no {', '.join(absent)} features yet for this registration: scored on what exists",
                             filled)
        return RiskScore(risk, PredictionStatus.scored, self.version, None, filled)


class RiskRefused(NotFound):
    """A registration the service will not score, with the machine-readable reason."""

    def __init__(self, code: RiskRefusal, message: str) -> None:
        super().__init__(message)
        self.code = code


_REFUSAL_TEXT = {
    RiskRefusal.unknown_course: "course {course_id} is unknown to the feature store; check the course id",
    RiskRefusal.unknown_student: "student {student_id} is unknown to the feature store; check the student id",
    RiskRefusal.not_enrolled: "student {student_id} is not enrolled in {course_id} (no registration features)",
}


class ChampionWatcher:
    """Holds the champion of each model and follows its alias: polls the registry and swaps atomically."""

    def __init__(self, *, settings: Settings, model_names: tuple[str, ...] = (RISK_MODEL,),
                 poll_seconds: float | None = None) -> None:
        self.settings = settings
        self.model_names = model_names
        self.poll_seconds = settings.serving_poll_seconds if poll_seconds is None else poll_seconds
        self.models: dict[str, LoadedModel] = {}
        self.last_error: dict[str, str] = {}
        self._readers: dict[str, OnlineFeatureReader | RedisFeatureReader] = {}
        self._lock = threading.Lock()  # one swap at a time (poll thread vs operator reload)
        self._stop = threading.Event()
        self._client = None
        self._thread: threading.Thread | None = None

    @property
    def online_store_path(self) -> Path:
        return self.settings.feast_dir / "online_store.db"

    def _mlflow(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.settings.mlflow_uri, registry_uri=self.settings.mlflow_uri)
        return self._client

    def _alias_version(self, name: str) -> str | None:
        from mlflow.exceptions import MlflowException

        from models.data import ModelAlias

        try:
            return str(self._mlflow().get_model_version_by_alias(name, ModelAlias.champion.value).version)
        except MlflowException:
            return None

    def _reader(self, service: str) -> OnlineFeatureReader | RedisFeatureReader:
        reader = self._readers.get(service)
        if reader is None:
            # The configured online store (sqlite by default, redis by setting): no code change to switch.
            reader = self._readers[service] = open_online_reader(
                service=service, online_store=self.settings.feast_online_store.value, project=FEAST_PROJECT,
                sqlite_path=self.online_store_path, redis_connection=self.settings.feast_redis_connection)
        return reader

    def _load(self, name: str) -> LoadedModel:
        from models.api import load_champion_onnx

        champion = load_champion_onnx(name, settings=self.settings)
        service = champion.schema.feature_service
        if not service:
            raise InvalidInput(f"model {name} v{champion.version} names no FeatureService in its schema; "
                               "re-register it with feature_service set")
        return LoadedModel(name=name, version=champion.version, schema=champion.schema,
                           session=ort_session(champion.onnx_bytes), reader=self._reader(service))

    def check(self) -> dict[str, str | None]:
        """Compare each alias with the loaded version; load and swap what moved. Returns loaded versions."""
        with self._lock:
            for name in self.model_names:
                current = self.models.get(name)
                try:
                    wanted = self._alias_version(name)
                    if wanted is None or (current is not None and current.version == wanted):
                        continue
                    loaded = self._load(name)
                except (InvalidInput, NotFound, Unavailable, OSError) as exc:
                    self.last_error[name] = str(exc)
                    log.error("champion of %s not loaded (keeping v%s): %s", name,
                              current.version if current else None, exc)
                    continue
                self.models[name] = loaded  # the swap: one reference assignment
                self.last_error.pop(name, None)
                log.info("serving %s v%s (was v%s)", name, loaded.version, current.version if current else None)
            return {name: (model.version if (model := self.models.get(name)) else None) for name in self.model_names}

    def start(self) -> None:
        self.check()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll, name="champion-watcher", daemon=True)
            self._thread.start()

    def _registry_stamp(self) -> tuple | None:
        """A cheap change detector for an SQLite registry: the database files' (size, mtime). None = unknown."""
        uri = self.settings.mlflow_uri
        if not uri.startswith("sqlite:///"):
            return None
        path = Path(uri.removeprefix("sqlite:///"))
        stamp = []
        for candidate in (path, path.with_name(path.name + "-wal")):
            try:
                info = candidate.stat()
            except OSError:
                stamp.append(None)
                continue
            stamp.append((info.st_size, info.st_mtime_ns))
        return tuple(stamp)

    def _poll(self) -> None:
        # An MLflow alias lookup costs a few ms of GIL-holding SQLAlchemy work in this process, which a request on
        # the event loop then waits for; with an SQLite registry, look only when its files changed (any alias
        # move writes them), and at least every _FULL_CHECK_EVERY polls anyway.
        last_stamp, polls = self._registry_stamp(), 0
        while not self._stop.wait(self.poll_seconds):
            polls += 1
            stamp = self._registry_stamp()
            if stamp is not None and stamp == last_stamp and polls % _FULL_CHECK_EVERY and self.models:
                continue
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must survive a registry hiccup; logged with traceback
                log.exception("champion poll failed; retrying in %.1f s", self.poll_seconds)
                continue
            if not self.last_error:  # a failed load is retried on the next poll, not after the files change
                last_stamp = stamp

    def stop(self) -> None:
        self._stop.set()
