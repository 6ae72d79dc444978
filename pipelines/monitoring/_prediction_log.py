"""The one reader of the serving prediction log (monitoring never parses it anywhere else).

Schema this reader expects (agreed with serving; one JSON object per line, files ``*.jsonl`` anywhere under
``<data_dir>/predictions/``, e.g. ``predictions/risk/2026-11-25.jsonl``)::

    {"ts": "2026-11-25T17:40:19.123456+00:00",   # when the prediction was made (ISO-8601, UTC)
     "model_name": "risk", "model_version": "3",
     "request_id": "…",                          # optional
     "entity": {"student_course": "11391:AAA-2013J"},  # optional: lets labels be joined when they arrive
     "features": {"n_missed": 1.0, …},           # the model inputs exactly as fed
     "output": 0.73,                             # the score (or {"risk_score": 0.73, …}: first number wins)
     "latency_ms": 4.2}

Keys absent from a line read as missing values; a line that is not JSON is skipped and counted.

A line may also carry ``inputs``: a model's inputs for several rows of one answer (a recommendation list: the
ranker's features for a uniform sample of the candidates it scored; format in ``serving/_plog.py``)::

    "inputs": {"sample": "uniform_candidates", "candidates": 287, "columns": ["penetration", …],
               "items": ["i12", …], "scores": [0.031, …], "rows": [[0.41, …], …]}

:func:`read_prediction_log` keeps one row per line (volume and latency count answers) and ignores it;
:func:`read_logged_inputs` reads one row per sampled input row (what a drift check compares). Lines without
``inputs`` (older lines, lists the ranker did not score) are simply not in the latter.

A line whose ``entity`` has a ``submission_id`` is a staff decision on a graded essay (the platform logs each one,
``label`` = the staff score): a later decision on the same submission replaces the earlier one, so a re-graded
essay counts once, with its final grade.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
BASE_COLUMNS = ["ts", "model_name", "model_version", "request_id", "prediction", "latency_ms"]
_OUTPUT_KEYS = ("risk_score", "score", "probability", "prediction")
_FILE_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_BLOCK_BYTES = 8 << 20  # incremental reads go through the file in blocks of this size


class LineHead(msgspec.Struct):
    """The fields of a line that volume and latency need. Decoding into it skips the rest of the line (features,
    a recommendation list's sampled inputs) without building it: ~20x faster than ``json.loads`` on lines that
    carry ``inputs``. Types are checked after decoding, so a malformed value is a missing one, not a bad line."""

    ts: object = None
    model_name: object = None
    model_version: object = None
    latency_ms: object = None
    entity: object = None

    @property
    def submission_id(self) -> str | None:
        value = self.entity.get("submission_id") if isinstance(self.entity, dict) else None
        return None if value is None else str(value)

    @property
    def latency(self) -> float:
        value = self.latency_ms
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


_HEAD = msgspec.json.Decoder(LineHead)


def line_head(line: bytes) -> LineHead | None:
    """The head of one log line, or None for a line that is not a JSON object naming its model."""
    try:
        head = _HEAD.decode(line)
    except msgspec.DecodeError:  # not JSON, or not an object
        return None
    return head if isinstance(head.model_name, str) else None


def read_new_heads(path: Path, offset: int) -> tuple[list[LineHead], int, int]:
    """The heads of the complete lines of ``path`` after byte ``offset``: ``(heads, new offset, bad lines)``. A last
    line without its newline is left for the next call (the writer may be in the middle of it)."""
    heads: list[LineHead] = []
    bad = 0
    with path.open("rb") as handle:
        handle.seek(offset)
        rest = b""
        while block := handle.read(_BLOCK_BYTES):
            block = rest + block
            end = block.rfind(b"\n") + 1
            for line in block[:end].splitlines():
                if line.strip():
                    head = line_head(line)
                    if head is None:
                        bad += 1
                    else:
                        heads.append(head)
            offset += end
            rest = block[end:]
    return heads, offset, bad


def read_heads(data_path: Path, *, since: datetime | None = None) -> pd.DataFrame:
    """One row per answer since ``since``, with only ``ts, model_name, model_version, latency_ms, submission_id``
    (a staff decision counted once, like :func:`read_prediction_log`): what volume and latency figures need, read
    without parsing model inputs."""
    rows = []
    for path in log_files(data_path, since=since):
        heads, _, bad = read_new_heads(path, 0)
        if bad:
            log.warning("prediction log: skipped %d lines of %s that are not JSON objects", bad, path.name)
        rows.extend((h.ts, h.model_name, None if h.model_version is None else str(h.model_version), h.latency,
                     h.submission_id) for h in heads)
    frame = pd.DataFrame.from_records(rows, columns=["ts", "model_name", "model_version", "latency_ms",
                                                     "submission_id"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce")
    frame = _latest_decisions(frame.sort_values("ts", kind="stable"))
    if since is not None:
        frame = frame[frame["ts"] >= pd.Timestamp(since)]
    return frame.reset_index(drop=True)


def log_dir(data_path: Path) -> Path:
    return data_path / PREDICTIONS_DIR


def log_files(data_path: Path, *, since: datetime | None = None) -> list[Path]:
    """The log's files, skipping whole days before ``since`` (serving writes ``YYYY-MM-DD-<pid>.jsonl``)."""
    folder = log_dir(data_path)
    if not folder.is_dir():
        return []
    first_day = None if since is None else f"{pd.Timestamp(since).tz_convert('UTC'):%Y-%m-%d}"
    paths = []
    for path in sorted(folder.rglob("*.jsonl")):
        day = _FILE_DAY.match(path.name)
        if first_day is not None and day and day.group(1) < first_day:
            continue
        paths.append(path)
    return paths


def read_prediction_log(data_path: Path, *, model_name: str | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> pd.DataFrame:
    """Predictions in ``[since, until)`` (of ``model_name``): the base columns, then the entity keys and features
    as columns (their names in ``frame.attrs["entity_columns"]`` / ``frame.attrs["feature_columns"]``)."""
    return read_log_files(log_files(data_path, since=since), model_name=model_name, since=since, until=until)


def read_log_files(paths: list[Path], *, model_name: str | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> pd.DataFrame:
    """:func:`read_prediction_log` over the given files only."""
    records = []
    entity_columns: dict[str, None] = {}
    feature_columns: dict[str, None] = {}  # ordered sets: first-seen order of the logged names
    bad = 0
    named = None if model_name is None else json.dumps(model_name)
    for line in _lines(paths):
        if named is not None and named not in line:  # cheap: another model's line is never parsed
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(entry, dict):
            bad += 1
            continue
        if model_name is not None and entry.get("model_name") != model_name:
            continue
        row = {
            "ts": entry.get("ts"), "model_name": entry.get("model_name"),
            "model_version": None if entry.get("model_version") is None else str(entry["model_version"]),
            "request_id": entry.get("request_id"), "prediction": _score(entry.get("output")),
            "latency_ms": entry.get("latency_ms"),
        }
        entity, features = entry.get("entity") or {}, entry.get("features") or {}
        entity_columns.update(dict.fromkeys(entity))
        feature_columns.update(dict.fromkeys(features))
        row.update(entity)
        row.update(features)
        records.append(row)
    if bad:
        log.warning("prediction log: skipped %d lines that are not JSON", bad)
    frame = pd.DataFrame.from_records(records, columns=None if records else BASE_COLUMNS)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    frame["prediction"] = pd.to_numeric(frame["prediction"], errors="coerce")
    frame = _latest_decisions(frame.sort_values("ts", kind="stable"))
    if since is not None:
        frame = frame[frame["ts"] >= pd.Timestamp(since)]
    if until is not None:
        frame = frame[frame["ts"] < pd.Timestamp(until)]
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    frame.attrs["feature_columns"] = list(feature_columns)
    frame.attrs["entity_columns"] = [name for name in entity_columns if name not in feature_columns]
    return frame


def read_logged_inputs(data_path: Path, *, model_name: str, since: datetime | None = None,
                       until: datetime | None = None) -> pd.DataFrame:
    """The sampled input rows of ``model_name``'s lines in ``[since, until)`` that carry ``inputs``: one row per
    sampled row with ``ts, model_name, model_version, scored_by`` (the version that scored them: the output's
    ``model_version`` where the line's names the experiment), ``line`` (which line), ``request_id``, the line's
    entity keys, ``item_id``,
    ``prediction`` (the row's score) and the input columns (their names, in logged order, in
    ``frame.attrs["feature_columns"]``; ``frame.attrs["lines"]``: how many lines they came from)."""
    lower = None if since is None else pd.Timestamp(since)
    upper = None if until is None else pd.Timestamp(until)
    heads: list[dict] = []
    blocks: list[pd.DataFrame] = []
    columns: dict[str, None] = {}
    for line in _lines(log_files(data_path, since=since)):
        if '"inputs"' not in line:  # cheap: most lines (other models, unscored lists) are never parsed here
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        inputs = entry.get("inputs")
        if entry.get("model_name") != model_name or not isinstance(inputs, dict) or not inputs.get("rows"):
            continue
        try:
            ts = pd.Timestamp(entry.get("ts"))
        except (TypeError, ValueError):
            continue
        if pd.isna(ts):
            continue
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        if (lower is not None and ts < lower) or (upper is not None and ts >= upper):
            continue
        names = [str(name) for name in inputs.get("columns", [])]
        rows = np.asarray([[np.nan if value is None else value for value in row] for row in inputs["rows"]],
                          dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(names):
            log.warning("prediction log: skipped %s inputs whose rows do not match their %d columns", model_name,
                        len(names))
            continue
        columns.update(dict.fromkeys(names))
        block = pd.DataFrame(rows, columns=names)
        block["item_id"] = _per_row(inputs.get("items"), len(rows))
        block["prediction"] = pd.to_numeric(pd.Series(_per_row(inputs.get("scores"), len(rows))), errors="coerce")
        blocks.append(block)
        output = entry.get("output") if isinstance(entry.get("output"), dict) else {}
        scored_by = output.get("model_version", entry.get("model_version"))  # the ranker's version, in its output
        heads.append({"ts": ts, "model_name": model_name,
                      "model_version": None if entry.get("model_version") is None else str(entry["model_version"]),
                      "scored_by": None if scored_by is None else str(scored_by), "line": len(heads),
                      "request_id": entry.get("request_id"), **(entry.get("entity") or {})})
    if not blocks:
        frame = pd.DataFrame(columns=[*BASE_COLUMNS, "item_id"])
    else:
        head = pd.DataFrame.from_records(heads).loc[np.repeat(np.arange(len(heads)), [len(b) for b in blocks])]
        frame = pd.concat([head.reset_index(drop=True), pd.concat(blocks, ignore_index=True)], axis=1)
        frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    frame.attrs["feature_columns"] = list(columns)
    frame.attrs["lines"] = len(blocks)
    return frame


def _per_row(values, n: int) -> list:
    return list(values) if isinstance(values, list) and len(values) == n else [None] * n


def _latest_decisions(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the latest line per (model, submission) among staff decisions (see the module docstring)."""
    if "submission_id" not in frame.columns:
        return frame
    decision = frame["submission_id"].notna()
    superseded = decision & frame.duplicated(["model_name", "submission_id"], keep="last")
    return frame[~superseded]


def _lines(paths: list[Path]) -> Iterator[str]:
    for path in paths:
        with path.open() as handle:
            for line in handle:
                if line.strip():
                    yield line


def _score(output) -> float | None:
    if isinstance(output, int | float) and not isinstance(output, bool):
        return float(output)
    if isinstance(output, dict):
        for key in _OUTPUT_KEYS:
            if isinstance(output.get(key), int | float):
                return float(output[key])
        for value in output.values():
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    if isinstance(output, list) and output and isinstance(output[-1], int | float):
        return float(output[-1])  # [p_negative, p_positive]
    return None
