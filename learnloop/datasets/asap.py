"""ASAP-AES essays reader (tab-separated, unquoted)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from learnloop.datasets._locate import dataset_dir
from learnloop.datasets._schema import Column, Kind, read_table
from learnloop.errors import DataValidationError

# Rubric range of domain1_score per prompt (data README, §1).
PROMPT_SCORE_RANGES: dict[int, tuple[int, int]] = {
    1: (2, 12), 2: (1, 6), 3: (0, 3), 4: (0, 3), 5: (0, 4), 6: (0, 4), 7: (0, 30), 8: (0, 60),
}

COLUMNS = [
    Column("essay_id", Kind.integer), Column("essay_set", Kind.integer, min_value=1),
    Column("fold", Kind.integer, min_value=0, max_value=4), Column("essay"),
    Column("domain1_score", Kind.integer, min_value=0),
    Column("rater1_domain1", Kind.integer, nullable=True), Column("rater2_domain1", Kind.integer, nullable=True),
]


def load_essays(path: Path | None = None) -> pd.DataFrame:
    """Read and validate an ASAP-format TSV (default: ``<datasets dir>/asap_aes/essays.tsv``).

    Scores outside the prompt's rubric range (for prompts 1–8) are rejected with the essay's line.
    """
    path = Path(path) if path is not None else dataset_dir("asap_aes") / "essays.tsv"
    essays = read_table(path, COLUMNS, sep="\t", quoting=csv.QUOTE_NONE)
    if essays["essay_id"].duplicated().any():
        raise DataValidationError(path, "duplicate essay ids", column="essay_id")
    for prompt, (low, high) in PROMPT_SCORE_RANGES.items():
        scores = essays.loc[essays["essay_set"] == prompt, "domain1_score"]
        if ((scores < low) | (scores > high)).any():
            raise DataValidationError(path, f"score outside prompt {prompt}'s range {low}–{high}",
                                      column="domain1_score")
    keep = [c.name for c in COLUMNS]
    return essays[keep + [c for c in essays.columns if c not in keep]].reset_index(drop=True)
