"""`learnloop data check`: validate every data set found and count its rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnloop.errors import DataValidationError


def check_datasets(root: Path) -> dict[str, Any]:
    """Validate each data set folder present under ``root``; a missing folder is reported as absent."""
    from learnloop.datasets.asap import load_essays
    from learnloop.datasets.beir import load_beir
    from learnloop.datasets.catalog import load_catalog
    from learnloop.datasets.oulad import load_oulad

    readers = {
        "oulad": lambda folder: load_oulad(folder).row_counts(),
        "asap_aes": lambda folder: {"essays": len(load_essays(folder / "essays.tsv"))},
        "course_catalog": lambda folder: {"items": len(load_catalog(folder))},
    }
    # Any folder in BEIR format (scifact/ in the shared data, synth_beir/ in synthetic data) is a search set.
    for folder in sorted(p for p in root.iterdir() if (p / "corpus.jsonl").exists()) if root.is_dir() else []:
        readers[folder.name] = lambda folder: load_beir(folder).row_counts()
    report: dict[str, Any] = {"root": str(root), "datasets": {}}
    for name, read in readers.items():
        folder = root / name
        if not folder.is_dir():
            report["datasets"][name] = {"status": "absent"}
            continue
        try:
            report["datasets"][name] = {"status": "ok", "rows": read(folder)}
        except DataValidationError as exc:
            report["datasets"][name] = {"status": "invalid", "error": exc.message,
                                        "file": str(exc.path), "column": exc.column}
    found = sum(d["status"] != "absent" for d in report["datasets"].values())
    report["ok"] = found > 0 and all(d["status"] != "invalid" for d in report["datasets"].values())
    if not found:  # a mistyped --root or an empty folder is not "all fine"
        report["error"] = (f"no data sets in {root}" + ("" if root.is_dir() else " (no such folder)") +
                           f"; expected one of {', '.join(readers)} (or any BEIR folder), or `learnloop data synth`")
    return report
