"""Prometheus metrics of the ML loop, computed at scrape time from what is on disk.

Drift checks and retraining run in CLI/scheduler processes while ``/metrics`` is served by the API process, so
in-process counters would read zero there; this collector reads ``monitoring/state.json`` (persisted counters)
and the prediction log (volume and latency) instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from pipelines.monitoring import _state
from pipelines.monitoring._prediction_log import read_prediction_log

# Latency buckets (seconds) around the serving budget: single-row ONNX is sub-ms, the p99 target is tens of ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_CACHE_SECONDS = 15.0  # a scrape every 15 s must not re-read a large log each time


class MonitoringCollector(Collector):
    def __init__(self, data_path: Path) -> None:
        self.data_path = data_path
        self._log_cache: tuple[float, object] | None = None

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
        yield from (share, detected, prediction, performance, last_check)

        counters = state.get("counters", {})
        for name, help_text, labels in (
            ("drift_checks", "Drift checks run", ["model"]),
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
        now = time.monotonic()
        if self._log_cache is None or now - self._log_cache[0] > _CACHE_SECONDS:
            self._log_cache = (now, read_prediction_log(self.data_path))
        frame = self._log_cache[1]
        volume = CounterMetricFamily("learnloop_predictions", "Predictions in the serving log", labels=["model"])
        latency = HistogramMetricFamily("learnloop_prediction_latency_seconds",
                                        "Prediction latency from the serving log", labels=["model"])
        for model, rows in frame.groupby("model_name", sort=True) if len(frame) else []:
            volume.add_metric([model], float(len(rows)))
            seconds = rows["latency_ms"].dropna().to_numpy() / 1000.0
            if len(seconds):
                counts = [(str(bound), float(np.sum(seconds <= bound))) for bound in LATENCY_BUCKETS]
                counts.append(("+Inf", float(len(seconds))))
                latency.add_metric([model], counts, float(seconds.sum()))
        yield volume
        yield latency


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def metrics_text(data_path: Path) -> bytes:
    """The Prometheus exposition of the monitoring metrics (for a ``/metrics`` route)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitoringCollector(data_path))
    return generate_latest(registry)
