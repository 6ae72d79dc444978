"""Where the data sets live: LEARNLOOP_DATASETS_DIR, else ../shared/data beside the checkout."""

from __future__ import annotations

from pathlib import Path

from learnloop.errors import Unavailable
from learnloop.settings import get_settings

DATASET_FOLDERS = ("oulad", "asap_aes", "scifact", "course_catalog")


def datasets_root() -> Path:
    """The folder holding oulad/, asap_aes/, scifact/, course_catalog/ (raises Unavailable if none)."""
    root = get_settings().datasets_dir
    if root is None or not Path(root).is_dir():
        raise Unavailable(
            "No data sets found: set LEARNLOOP_DATASETS_DIR to a folder with oulad/, asap_aes/, scifact/ or "
            "course_catalog/, or run `learnloop data synth` and point LEARNLOOP_DATASETS_DIR at its output"
        )
    return Path(root)


def dataset_dir(name: str) -> Path:
    folder = datasets_root() / name
    if not folder.is_dir():
        raise Unavailable(f"Data set '{name}' not found in {datasets_root()} (run `learnloop data check`)")
    return folder
