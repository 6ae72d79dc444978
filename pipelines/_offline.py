"""Writing snapshot frames as the parquet batch sources of the Feast repo (and the registration table the
label builders read)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.api import source_path, view_features, view_join_key, view_names
from learnloop.errors import DataValidationError
from learnloop.settings import Settings

REGISTRATIONS_FILE = "data/registrations.parquet"


def registrations_path(feast_dir: Path) -> Path:
    return Path(feast_dir) / REGISTRATIONS_FILE


def source_frame(view: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Exactly the columns a view's source holds (join key, timestamps, features in order), checked."""
    columns = [view_join_key(view), "event_timestamp", "created_timestamp", *view_features(view)]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(view, f"snapshot frame lacks {len(missing)} columns", column=missing[0])
    out = frame[columns].copy()
    for feature in view_features(view):
        out[feature] = out[feature].astype("float64")
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
    out["created_timestamp"] = pd.to_datetime(out["created_timestamp"], utc=True)
    return out


def write_sources(frames: dict[str, pd.DataFrame], registrations: pd.DataFrame | None,
                  settings: Settings) -> dict[str, int]:
    """Replace every view's parquet source with ``frames[view]``; returns rows written per view."""
    written = {}
    for view in view_names():
        path = source_path(view, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = source_frame(view, frames[view])
        _atomic_parquet(out, path)
        written[view] = len(out)
    if registrations is not None:
        _atomic_parquet(registrations, registrations_path(settings.feast_dir))
    return written


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    # Readers (materialization, training) never see a half-written file.
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
