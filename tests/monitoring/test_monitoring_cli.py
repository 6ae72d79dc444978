"""`learnloop drift …` wiring and the current window read from the serving prediction log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import FEATURES
from monitoring_fixtures import drift_app
from typer.testing import CliRunner

from learnloop.errors import Unavailable
from pipelines.monitoring import _windows
from pipelines.monitoring.api import check_drift


def test_drift_status_json_reports_the_latest_check(settings, reference_window, drifted_window):
    result = check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                         settings=settings)

    out = CliRunner().invoke(drift_app(), ["drift", "status", "--json"])

    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["models"]["risk"]["drift_detected"] is True
    assert payload["models"]["risk"]["drifted_features"] == result.drifted_features
    assert payload["models"]["risk"]["report_html"] == str(result.report_html)


def test_current_window_is_the_recent_prediction_log(settings):
    folder = settings.data_path / "predictions" / "risk"
    folder.mkdir(parents=True)
    now = datetime.now(UTC)
    lines = [{"ts": (now - timedelta(days=age)).isoformat(), "model_name": "risk", "model_version": "2",
              "entity": {"student_course": f"{i}:AAA-2014J", "id_student": i, "course": "AAA-2014J"},
              "features": {"n_missed": float(i), "score_mean": 50.0}, "output": {"risk_score": 0.5},
              "latency_ms": 1.0} for i, age in enumerate([10, 3, 1, 0.1])]
    (folder / "2026-11-25-1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    window = _windows.prediction_log_window("risk", settings=settings, days=7, now=now, min_rows=3)

    assert window.features == ["n_missed", "score_mean"]
    assert list(window.frame["n_missed"]) == [1.0, 2.0, 3.0]  # the 10-day-old prediction is outside
    # Three predictions are not a window by default: skipped (not drift, no retraining on noise).
    with pytest.raises(_windows.NothingToCheck, match="only 3 predictions of risk .* needs at least 50"):
        _windows.prediction_log_window("risk", settings=settings, days=7, now=now)
    with pytest.raises(Unavailable, match="no predictions of grader"):
        _windows.prediction_log_window("grader", settings=settings, days=7, now=now)


def test_drift_status_with_no_check_yet_says_what_to_run(settings):
    """It printed an empty table; a newcomer could not tell whether anything was wrong."""
    out = CliRunner().invoke(drift_app(), ["drift", "status"])

    assert out.exit_code == 0, out.output
    assert "no drift check recorded yet" in out.output and "learnloop drift check" in out.output


def test_drift_status_table_shows_the_report_path_in_full(settings, reference_window, drifted_window):
    """The table cut the report's path ('/tmp/…/var/rep…'), the one thing an operator opens next, and listed every
    drifted feature (up to 88 lines per model)."""
    result = check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                         settings=settings)

    out = CliRunner().invoke(drift_app(), ["drift", "status"], env={"COLUMNS": "100"})

    assert out.exit_code == 0, out.output
    # On stdout, like `models list`: it was on stderr, so `learnloop drift status | grep risk` found nothing.
    report_column = "".join(line.split("│")[-2].strip() for line in out.stdout.splitlines() if line.count("│") > 2)
    assert report_column == str(result.report_html)
    assert len(result.drifted_features) <= 6 or "more)" in out.output


def test_drift_check_of_a_model_that_does_not_exist_is_refused_and_leaves_no_row(registry_settings):
    """`drift check -m rsik` (a typo) was "skipped" with exit 0 and recorded: a model named "rsik" stayed on
    `drift status` and /operator for good."""
    out = CliRunner().invoke(drift_app(), ["drift", "check", "-m", "rsik"])

    assert out.exit_code == 2 and "no model 'rsik' to check" in out.output and "learnloop models list" in out.output
    status = CliRunner().invoke(drift_app(), ["drift", "status", "--json"])
    assert json.loads(status.stdout)["models"] == {}
