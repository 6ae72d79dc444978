"""The operator page, its JSON, the report links and the Prometheus metrics, read from what is on disk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import FEATURES
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipelines.monitoring.api import (
    GateDecision,
    ModelStatus,
    check_drift,
    handle_drift,
    read_prediction_log,
    record_registry,
)


def _write_prediction_log(settings, latencies_ms):
    folder = settings.data_path / "predictions" / "risk"
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime.now(UTC) - timedelta(hours=1)
    with (folder / "today.jsonl").open("w") as out:
        for i, latency in enumerate(latencies_ms):
            out.write(json.dumps({"ts": (start + timedelta(seconds=i)).isoformat(), "model_name": "risk",
                                  "model_version": 3, "request_id": None,
                                  "entity": {"student_course": f"{i}:AAA-2014J", "id_student": i,
                                             "course": "AAA-2014J"},
                                  "features": {"n_missed": i % 3, "clicks_total_7d": 10.0 * i},
                                  "output": {"risk_score": 0.1 * (i % 10), "status": "ok"},
                                  "latency_ms": latency}) + "\n")
        out.write("not json\n")


def test_prediction_log_reader_flattens_entities_features_and_output(settings):
    _write_prediction_log(settings, [2.0, 4.0, 30.0])

    frame = read_prediction_log(model_name="risk", settings=settings)

    assert list(frame["latency_ms"]) == [2.0, 4.0, 30.0]
    assert list(frame["prediction"]) == pytest.approx([0.0, 0.1, 0.2])
    assert list(frame["student_course"]) == ["0:AAA-2014J", "1:AAA-2014J", "2:AAA-2014J"]
    assert list(frame["clicks_total_7d"]) == [0.0, 10.0, 20.0]
    assert set(frame["model_version"]) == {"3"}
    # Entity keys are columns (labels join on them) but never features to test for drift.
    assert frame.attrs["feature_columns"] == ["n_missed", "clicks_total_7d"]
    assert frame.attrs["entity_columns"] == ["student_course", "id_student", "course"]
    assert read_prediction_log(model_name="grader", settings=settings).empty
    later = datetime.now(UTC)
    assert read_prediction_log(since=later, settings=settings).empty


def test_a_re_decided_submission_counts_once_with_its_latest_decision(settings):
    """The platform logs every staff decision on an essay; accepting, overriding and re-grading one submission must
    not weigh it three times in the QWK, and the final grade is the label."""
    folder = settings.data_path / "predictions" / "essay_grader"
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime.now(UTC) - timedelta(hours=1)
    decisions = [("s1", 2, 2), ("s2", 1, 1), ("s1", 2, 0), ("s1", 2, 3)]  # s1: accepted, overridden, re-graded
    with (folder / f"{start:%Y-%m-%d}-platform.jsonl").open("w") as out:
        for minute, (submission, ai, staff) in enumerate(decisions):
            out.write(json.dumps({"ts": (start + timedelta(minutes=minute)).isoformat(),
                                  "model_name": "essay_grader_p3", "model_version": "v1", "request_id": submission,
                                  "entity": {"submission_id": submission, "label": staff},
                                  "features": {"n_words": 100}, "output": ai}) + "\n")
            out.write(json.dumps({"ts": (start + timedelta(minutes=minute)).isoformat(),  # not decisions: all kept
                                  "model_name": "essay_grader", "model_version": "v1", "request_id": submission,
                                  "entity": {"prompt_id": 3}, "features": {"n_words": 100}, "output": ai}) + "\n")

    frame = read_prediction_log(model_name="essay_grader_p3", settings=settings)

    assert list(zip(frame["submission_id"], frame["label"], strict=True)) == [("s2", 1), ("s1", 3)]
    assert len(read_prediction_log(model_name="essay_grader", settings=settings)) == 4


@pytest.fixture(scope="module")
def client(tmp_path_factory, reference_window, drifted_window):
    # One drift check + retrain for the module: every test here only reads the resulting state.
    from learnloop.settings import Settings
    from pipelines.monitoring.api import operator_router

    settings = Settings(data_dir=tmp_path_factory.mktemp("operator") / "var")
    _write_prediction_log(settings, [2.0, 4.0, 30.0, 3.0])
    record_registry([ModelStatus("risk", {"champion": "3", "challenger": "4"}, ["3", "4"])], settings=settings)
    result = check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                         settings=settings)
    handle_drift(result, retrain=lambda name, reasons: "4",
                 promote=lambda name: GateDecision(False, "held_out_metric: 0.70 vs 0.74", "4", "3"),
                 settings=settings)
    app = FastAPI()
    app.include_router(operator_router(settings=settings))
    with TestClient(app) as test_client:
        yield test_client


def test_operator_page_lists_models_drift_reports_volume_and_alerts(client):
    page = client.get("/operator")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "champion → v3" in html and "challenger → v4" in html
    assert "DRIFT" in html and "clicks_total_7d" in html
    assert "4 in 7 days" in html and "p50 3.5" in html
    assert "refused" in html and "held_out_metric: 0.70 vs 0.74" in html
    status = client.get("/operator/status").json()
    report_url = status["models"][0]["drift"]["report_html_url"]
    assert report_url.startswith("/operator/reports/risk/") and report_url in html
    report = client.get(report_url)
    assert report.status_code == 200 and "<html" in report.text[:2000].lower()


def test_aliases_say_when_the_registry_was_not_read_rather_than_none(tmp_path):
    """Right after `make demo` no drift check has snapshotted the registry: a served champion is not "none"."""
    from learnloop.settings import Settings
    from pipelines.monitoring.api import operator_router

    settings = Settings(data_dir=tmp_path / "var")
    served = [{"name": "risk", "status": "loaded", "version": "3", "alias": "champion", "n_inputs": 88,
               "route": "/predict_risk"}, {"name": "essay_grader_p1", "status": "not_loaded"}]

    def aliases_cells():
        app = FastAPI()
        app.include_router(operator_router(settings=settings, served=lambda: served))
        with TestClient(app) as test_client:
            html = test_client.get("/operator").text
        return {name: html.split(f'data-model="{name}"')[1].split("<td>")[2].split("</td>")[0]
                for name in ("risk", "essay_grader_p1")}

    before = aliases_cells()
    assert all("not read yet" in cell for cell in before.values()), before
    record_registry([ModelStatus("risk", {"champion": "3"}, ["3"])], settings=settings)
    after = aliases_cells()
    assert "champion → v3" in after["risk"] and "not registered" in after["essay_grader_p1"], after


def test_report_route_serves_only_saved_reports(client):
    assert client.get("/operator/reports/risk/..%2F..%2Fstate.json").status_code == 404
    assert client.get("/operator/reports/risk/missing.html").status_code == 404
    assert client.get("/operator/reports/..%2Fmonitoring/state.json").status_code == 404


def test_metrics_expose_drift_retraining_alerts_and_latency(client):
    text = client.get("/operator/metrics").text

    assert 'learnloop_drift_share{model="risk"} 0.5' in text
    assert 'learnloop_drift_detected{model="risk"} 1.0' in text
    assert 'learnloop_drift_checks_total{model="risk"} 1.0' in text
    assert 'learnloop_retrain_triggers_total{model="risk"} 1.0' in text
    assert 'learnloop_gate_decisions_total{model="risk",outcome="refused"} 1.0' in text
    assert 'learnloop_operator_alerts_total{model="risk"} 1.0' in text
    assert 'learnloop_predictions_total{model="risk"} 4.0' in text
    assert 'learnloop_prediction_latency_seconds_bucket{le="0.005",model="risk"} 3.0' in text
    assert 'learnloop_prediction_latency_seconds_count{model="risk"} 4.0' in text


def test_grafana_dashboard_queries_only_metrics_we_expose(client):
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "ops" / "grafana" / "learnloop.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"learnloop_[a-z_]+", target["expr"])}
    text = client.get("/operator/metrics").text
    # Sample names, plus family names of families without samples yet (e.g. no labelled window so far).
    exposed = set(re.findall(r"^(?:# TYPE )?(learnloop_[a-z_]+)", text, flags=re.M))

    assert queried, "the dashboard queries no learnloop metric"
    assert queried <= exposed, f"dashboard queries unknown metrics: {sorted(queried - exposed)}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_prediction_counts_grow_with_the_log_and_old_days_are_skipped_by_file(settings):
    from pipelines.monitoring.api import metrics_text

    folder = settings.data_path / "predictions" / "risk"
    folder.mkdir(parents=True)
    now = datetime.now(UTC)

    def line(ts, latency):
        return json.dumps({"ts": ts.isoformat(), "model_name": "risk", "model_version": "1", "features": {},
                           "output": {"risk_score": 0.2}, "latency_ms": latency}) + "\n"

    (folder / "2020-01-01-1.jsonl").write_text(line(datetime(2020, 1, 1, tzinfo=UTC), 1.0))
    today = folder / f"{now:%Y-%m-%d}-1.jsonl"
    today.write_text(line(now, 2.0))
    assert 'learnloop_predictions_total{model="risk"} 2.0' in metrics_text(settings=settings).decode()

    with today.open("a") as out:
        out.write(line(now, 300.0))
    text = metrics_text(settings=settings).decode()
    assert 'learnloop_predictions_total{model="risk"} 3.0' in text
    assert 'learnloop_prediction_latency_seconds_bucket{le="0.25",model="risk"} 2.0' in text
    assert 'learnloop_prediction_latency_seconds_bucket{le="0.5",model="risk"} 3.0' in text
    # A window read skips the 2020 file without opening it (its day is before the window).
    assert list(read_prediction_log(since=now - timedelta(days=1), settings=settings)["latency_ms"]) == [2.0, 300.0]


def test_scrapes_read_only_the_lines_appended_since_the_last_one(settings, monkeypatch):
    """A day of recommendation lists (~5 KB each with the ranker's sampled inputs) was parsed whole at every scrape
    (8 s for 100,000 lists): now a scrape reads from where the previous one stopped, and a line the writer has not
    finished waits for the next scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    from pipelines.monitoring import _metrics

    monkeypatch.setattr(_metrics, "_CACHE_SECONDS", 0.0)
    reads = []
    real = _metrics.read_new_heads
    monkeypatch.setattr(_metrics, "read_new_heads", lambda path, offset: reads.append(offset) or real(path, offset))
    folder = settings.data_path / "predictions" / "recommender"
    folder.mkdir(parents=True)
    now = datetime.now(UTC)
    today = folder / f"{now:%Y-%m-%d}-1.jsonl"

    def line(i, latency=5.0, **extra):
        return json.dumps({"ts": now.isoformat(), "model_name": "recommender", "model_version": "recommender-v1",
                           "entity": {"user_id": f"u{i}"}, "latency_ms": latency, **extra,
                           "inputs": {"columns": ["a", "b"], "rows": [[0.1, 0.2]] * 8}}) + "\n"

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_metrics.MonitoringCollector(settings.data_path))

    def total():
        text = generate_latest(registry).decode()
        return next(float(row.split()[-1]) for row in text.splitlines()
                    if row.startswith('learnloop_predictions_total{model="recommender"}'))

    today.write_text(line(0) + line(1))
    assert total() == 2.0 and reads == [0]
    first_end = today.stat().st_size
    finished, unfinished = line(2), line(3)
    with today.open("a") as out:
        out.write(finished + unfinished[:40])  # the writer is in the middle of line 3
    assert total() == 3.0 and reads == [0, first_end]
    with today.open("a") as out:
        out.write(unfinished[40:] + "5\n" + '{"model_name": "recommender", "latency_ms": "slow"}\n')
    assert total() == 5.0  # line 3, and a line whose latency is not a number; "5" is not a line of the log
    assert reads[-1] == first_end + len(finished)
    today.write_text(line(9))  # rotated or rewritten: read again from the start
    assert total() == 1.0 and reads[-1] == 0


def _head_line(model, i, pad=""):
    return json.dumps({"ts": datetime.now(UTC).isoformat(), "model_name": model, "model_version": "1",
                       "entity": {"user_id": f"u{i}{pad}"}, "latency_ms": 5.0}) + "\n"


def _predictions_total(registry, model):
    from prometheus_client import generate_latest

    rows = [row for row in generate_latest(registry).decode().splitlines()
            if row.startswith(f'learnloop_predictions_total{{model="{model}"}}')]
    return float(rows[0].split()[-1]) if rows else 0.0


def test_a_log_replaced_by_another_on_the_same_inode_is_read_again(settings, monkeypatch):
    """ext4 gives a deleted file's inode number to the next file created: a log replaced by one of the same size
    kept its stale counts, and one replaced by a longer file was read from the middle of its new content."""
    import os

    from prometheus_client import CollectorRegistry

    from pipelines.monitoring import _metrics

    monkeypatch.setattr(_metrics, "_CACHE_SECONDS", 0.0)
    folder = settings.data_path / "predictions" / "recommender"
    folder.mkdir(parents=True)
    today = folder / f"{datetime.now(UTC):%Y-%m-%d}-1.jsonl"
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_metrics.MonitoringCollector(settings.data_path))

    today.write_text(_head_line("recommender", 1) + _head_line("recommender", 2))
    assert _predictions_total(registry, "recommender") == 2.0
    size, stat = today.stat().st_size, today.stat()
    one = _head_line("recommender", 1)
    one = _head_line("recommender", 1, pad="x" * (size - len(one)))  # one line, the same size
    today.write_text(one)  # in place: the same inode
    os.utime(today, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert today.stat().st_size == size and today.stat().st_ino == stat.st_ino
    assert _predictions_total(registry, "recommender") == 1.0

    today.write_text(_head_line("risk", 1, pad="x" * 40) + _head_line("risk", 2))  # longer, other lines
    assert _predictions_total(registry, "risk") == 2.0
    assert _predictions_total(registry, "recommender") == 0.0


def test_concurrent_scrapes_count_each_line_once(settings, monkeypatch):
    """/metrics is a sync route (a thread pool): two scrapes at once both read the lines after the same offset
    into the same tally, doubling the counters."""
    import threading
    import time

    from prometheus_client import CollectorRegistry

    from pipelines.monitoring import _metrics

    monkeypatch.setattr(_metrics, "_CACHE_SECONDS", 0.0)
    real = _metrics.read_new_heads

    def slow(path, offset):
        time.sleep(0.2)  # a day of lists takes seconds to read
        return real(path, offset)

    folder = settings.data_path / "predictions" / "recommender"
    folder.mkdir(parents=True)
    today = folder / f"{datetime.now(UTC):%Y-%m-%d}-1.jsonl"
    today.write_text(_head_line("recommender", 0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_metrics.MonitoringCollector(settings.data_path))
    assert _predictions_total(registry, "recommender") == 1.0
    with today.open("a") as out:
        out.write(_head_line("recommender", 1) + _head_line("recommender", 2))
    monkeypatch.setattr(_metrics, "read_new_heads", slow)
    scrapes = [threading.Thread(target=lambda: _predictions_total(registry, "recommender")) for _ in range(2)]
    for scrape in scrapes:
        scrape.start()
    for scrape in scrapes:
        scrape.join()
    assert _predictions_total(registry, "recommender") == 3.0


def test_the_operator_page_volume_skips_model_inputs_and_malformed_lines(settings):
    from pipelines.monitoring._prediction_log import read_heads

    folder = settings.data_path / "predictions" / "recommender"
    folder.mkdir(parents=True)
    now = datetime.now(UTC)
    rows = [{"ts": (now - timedelta(minutes=i)).isoformat(), "model_name": "recommender", "model_version": 7,
             "latency_ms": float(i), "inputs": {"rows": [[1.0] * 40] * 8}} for i in range(3)]
    (folder / f"{now:%Y-%m-%d}-1.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows) + "[1, 2]\nnot json\n\n")
    heads = read_heads(settings.data_path, since=now - timedelta(days=1))
    assert list(heads["latency_ms"]) == [2.0, 1.0, 0.0] and set(heads["model_version"]) == {"7"}
    full = read_prediction_log(since=now - timedelta(days=1), settings=settings)  # the drift check's reader
    assert list(full["latency_ms"]) == [2.0, 1.0, 0.0]


def test_the_drift_checks_input_reader_skips_lines_it_cannot_place(settings):
    """A line carrying "inputs" that is not an object, or whose time cannot be read, is skipped, not a failed check."""
    from pipelines.monitoring._prediction_log import read_logged_inputs

    folder = settings.data_path / "predictions" / "recommender"
    folder.mkdir(parents=True)
    now = datetime.now(UTC)
    good = {"ts": now.isoformat(), "model_name": "recommender", "model_version": "v",
            "inputs": {"columns": ["a", "b"], "items": ["i1"], "scores": [0.5], "rows": [[1.0, 2.0]]}}
    lines = [json.dumps(good), json.dumps(["inputs"]), json.dumps({**good, "ts": "yesterday-ish"}),
             json.dumps({**good, "ts": None})]
    (folder / f"{now:%Y-%m-%d}-1.jsonl").write_text("\n".join(lines) + "\n")
    sampled = read_logged_inputs(settings.data_path, model_name="recommender")
    assert len(sampled) == 1 and sampled.attrs["lines"] == 1 and list(sampled["a"]) == [1.0]
