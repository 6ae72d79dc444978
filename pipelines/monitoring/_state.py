"""What monitoring remembers between processes, as files under ``<data_dir>/monitoring``.

Drift checks run from the CLI or a scheduler, the operator page and ``/metrics`` are served by another process,
so the latest result per model and every counter live on disk, never only in process memory:

* ``state.json`` — latest drift summary per model, how each model's latest check ended (``checks``: checked,
  skipped or failed, when and why), cumulative counters, the last registry snapshot.
* ``retrain_log.jsonl`` — one line per triggered retraining (reasons, challenger, gate decision).
* ``operator_alerts.jsonl`` — one line per alert operators must act on (gate refused, retraining failed).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
RETRAIN_LOG = "retrain_log.jsonl"
ALERTS_FILE = "operator_alerts.jsonl"

_lock = threading.Lock()  # one writer per process; writes are atomic renames, so readers never see half a file


def monitoring_dir(data_path: Path) -> Path:
    return data_path / "monitoring"


def read_state(data_path: Path) -> dict[str, Any]:
    path = monitoring_dir(data_path) / STATE_FILE
    if not path.is_file():
        return {"models": {}, "checks": {}, "counters": {}, "registry": None}
    return json.loads(path.read_text())


def update_state(data_path: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read-modify-write ``state.json`` atomically (temp file + rename)."""
    folder = monitoring_dir(data_path)
    folder.mkdir(parents=True, exist_ok=True)
    with _lock:
        state = read_state(data_path)
        change(state)
        handle, tmp = tempfile.mkstemp(dir=folder, prefix=".state-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(state, out, indent=1, default=str)
        os.replace(tmp, folder / STATE_FILE)
    return state


def bump(state: dict[str, Any], counter: str, *labels: str) -> None:
    """Increment ``state["counters"][counter][label1|label2…]``."""
    key = "|".join(labels)
    bucket = state.setdefault("counters", {}).setdefault(counter, {})
    bucket[key] = bucket.get(key, 0) + 1


def append_line(data_path: Path, file_name: str, record: dict[str, Any]) -> None:
    folder = monitoring_dir(data_path)
    folder.mkdir(parents=True, exist_ok=True)
    with _lock, (folder / file_name).open("a") as out:
        out.write(json.dumps(record, default=str) + "\n")


def read_lines(data_path: Path, file_name: str) -> list[dict[str, Any]]:
    path = monitoring_dir(data_path) / file_name
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
