"""Prometheus metrics of the ML loop, computed at scrape time from what is on disk.

Drift checks and retraining run in CLI/scheduler processes while ``/metrics`` is served by the API process, so
in-process counters would read zero there; this collector reads ``monitoring/state.json`` (persisted counters)
and the prediction log (volume and latency) instead.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from pipelines.monitoring import _state
from pipelines.monitoring._prediction_log import log_files, read_new_heads
from pipelines.monitoring.data import CheckOutcome

# Latency buckets (seconds) around the serving budget: single-row ONNX is sub-ms, the p99 target is tens of ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CACHE_SECONDS = 15.0  # scrapes closer together than this reuse the last file listing


class MonitoringCollector(Collector):
    def __init__(self, data_path: Path) -> None:
        self.data_path = data_path
        self._files: dict[Path, _FileTally] = {}
        self._checked_at: float | None = None
        self._lock = threading.Lock()

    def collect(self):
        state = _state.read_state(self.data_path)
        share = GaugeMetricFamily("learnloop_drift_share", "Share of a model's features whose drift test failed "
                                  "in the latest check", labels=["model"])
        detected = GaugeMetricFamily("learnloop_drift_detected", "1 when the latest check found dataset drift "
                                     "(Evidently test result)", labels=["model"])
        prediction = GaugeMetricFamily("learnloop_prediction_drift", "1 when the latest check found prediction drift",
                                       labels=["model"])
        performance = GaugeMetricFamily("learnloop_model_performance", "Quality on the current window (AUC for "
                                        "risk, QWK for grading)", labels=["model", "metric"])
        last_check = GaugeMetricFamily("learnloop_drift_last_check_timestamp_seconds",
                                       "When the latest drift check ran", labels=["model"])
        for model, summary in sorted(state.get("models", {}).items()):
            share.add_metric([model], float(summary["share"]))
            detected.add_metric([model], float(bool(summary["drift_detected"])))
            if summary.get("prediction_drift") is not None:
                prediction.add_metric([model], float(bool(summary["prediction_drift"])))
            perf = summary.get("performance") or {}
            if perf.get("current") is not None:
                performance.add_metric([model, perf["metric"]], float(perf["current"]))
            last_check.add_metric([model], _epoch(summary["checked_at"]))
        failing = GaugeMetricFamily("learnloop_drift_check_failed", "1 when a model's latest drift check failed "
                                    "(no report; see drift status for the reason)", labels=["model"])
        for model, check in sorted(state.get("checks", {}).items()):
            failing.add_metric([model], float(check["outcome"] == CheckOutcome.failed))
        yield from (share, detected, prediction, performance, last_check, failing)

        counters = state.get("counters", {})
        for name, help_text, labels in (
            ("drift_checks", "Drift checks run", ["model"]),
            ("drift_check_failures", "Drift checks that failed to produce a report", ["model"]),
            ("drift_detected", "Drift checks that found dataset drift", ["model"]),
            ("retrain_triggers", "Retraining runs started by drift or a performance drop", ["model"]),
            ("gate_decisions", "Promotion gate decisions on drift-triggered challengers", ["model", "outcome"]),
            ("operator_alerts", "Alerts raised for operators (gate refused, retraining failed)", ["model"]),
        ):
            family = CounterMetricFamily(f"learnloop_{name}", help_text, labels=labels)
            for key, value in sorted(counters.get(name, {}).items()):
                family.add_metric(key.split("|"), float(value))
            yield family
        yield from self._prediction_families()

    def _prediction_families(self):
        volume = CounterMetricFamily("learnloop_predictions", "Predictions in the serving log", labels=["model"])
        latency = HistogramMetricFamily("learnloop_prediction_latency_seconds",
                                        "Prediction latency from the serving log", labels=["model"])
        totals: dict[str, np.ndarray] = {}  # model -> [count, sum_seconds, bucket counts…]
        for summary in self._file_summaries().values():
            for model, row in summary.items():
                totals[model] = totals.get(model, 0) + row
        for model, row in sorted(totals.items()):
            volume.add_metric([model], float(row[0]))
            n_timed = float(row[-1])
            buckets = [(str(bound), float(row[2 + i])) for i, bound in enumerate(LATENCY_BUCKETS)]
            latency.add_metric([model], [*buckets, ("+Inf", n_timed)], float(row[1]))
        yield volume
        yield latency

    def _file_summaries(self) -> dict[Path, dict[str, np.ndarray]]:
        """Per log file: predictions, latency sum, bucket counts and timed count per model. Only the lines appended
        since the last scrape are read (only today's files grow; a file replaced or cut short is read again), so
        counters stay monotonic and a scrape costs what was logged since the previous one.

        Under a lock, and copies out: the tallies are read and added to in place, so two scrapes at once (the
        route runs in a thread pool) would read the same lines twice, or sum a tally while the other adds to it."""
        with self._lock:
            now = time.monotonic()
            if self._checked_at is None or now - self._checked_at >= _CACHE_SECONDS:
                self._checked_at = now
                self._files = self._read_files()
            return {path: {model: row.copy() for model, row in tally.models.items()}
                    for path, tally in self._files.items()}

    def _read_files(self) -> dict[Path, _FileTally]:
        seen = {}
        for path in log_files(self.data_path):
            tally = self._files.get(path)
            stat = path.stat()
            if tally is None or not tally.continued_by(path, stat):
                tally = _FileTally(inode=stat.st_ino)
            if stat.st_size > tally.offset:
                tally.read_new(path)
            tally.size, tally.mtime_ns = stat.st_size, stat.st_mtime_ns
            seen[path] = tally
        return seen


class _FileTally:
    """What one log file held up to ``offset``: per model ``[count, latency sum (s), bucket counts…, timed]``. A
    staff decision on an essay already counted (same model and submission) is not counted again."""

    def __init__(self, *, inode: int) -> None:
        self.inode = inode
        self.offset = 0
        self.size = self.mtime_ns = -1  # the file's size and mtime when last looked at
        self.models: dict[str, np.ndarray] = {}
        self._decided: set[tuple[str, str]] = set()

    def continued_by(self, path: Path, stat) -> bool:
        """Whether the file now is the one tallied, at most with lines appended. ext4 hands a deleted file's inode
        number to the next file created, so a log replaced by another of the same size (or longer) keeps its
        inode: an unchanged size with a new mtime is a rewrite, and an appended file still ends a line where the
        tally stopped."""
        if stat.st_ino != self.inode or stat.st_size < max(self.offset, self.size):
            return False
        if stat.st_size == self.size:
            return stat.st_mtime_ns == self.mtime_ns
        if not self.offset:
            return True
        with path.open("rb") as handle:
            handle.seek(self.offset - 1)
            return handle.read(1) == b"\n"

    def read_new(self, path: Path) -> None:
        heads, self.offset, _ = read_new_heads(path, self.offset)
        bounds = np.asarray(LATENCY_BUCKETS)
        for head in heads:
            submission = head.submission_id
            if submission is not None:
                if (head.model_name, submission) in self._decided:
                    continue
                self._decided.add((head.model_name, submission))
            row = self.models.get(head.model_name)
            if row is None:
                row = self.models[head.model_name] = np.zeros(len(LATENCY_BUCKETS) + 3)
            row[0] += 1
            seconds = head.latency / 1000.0
            if not np.isnan(seconds):
                row[1] += seconds
                row[2:-1] += seconds <= bounds
                row[-1] += 1


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def metrics_text(data_path: Path) -> bytes:
    """The Prometheus exposition of the monitoring metrics (for a ``/metrics`` route)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector(data_path))
    return generate_latest(registry)
