"""Synthetic ASAP-format essays for the grading tests (a uniquely named module: test folders share one
import namespace, so `from conftest import …` could pick another folder's conftest)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

_BASIC = ["good", "bad", "thing", "stuff", "people", "like", "very", "really", "get", "go", "make", "think", "big", "nice", "lot", "kids", "time", "use", "help"]
_RICH = ["consequently", "furthermore", "significant", "perspective", "demonstrate", "substantial", "evidence", "nevertheless", "analysis", "community", "essential", "influence", "contribute", "beneficial", "however", "therefore", "moreover", "individuals", "technology", "interaction", "ultimately"]
_FILLER = ["the", "a", "and", "to", "of", "in", "is", "that", "it", "for", "they", "we", "can", "with", "on"]


def synthetic_essay(quality: float, rng: np.random.Generator) -> str:
    """An essay whose length, vocabulary, spelling and punctuation rise with ``quality`` in [0, 1]."""
    n_words = int(40 + 220 * quality + rng.normal(0, 15))
    words, sentences = [], []
    for _ in range(max(n_words, 12)):
        pick = rng.random()
        pool = _FILLER if pick < 0.45 else (_RICH if pick < 0.45 + 0.45 * quality else _BASIC)
        word = pool[int(rng.integers(len(pool)))]
        if len(word) > 4 and rng.random() < 0.15 * (1 - quality):
            word = word[:2] + word[3] + word[2] + word[4:]
        if rng.random() < 0.01:
            word = f"@PERSON{int(rng.integers(1, 4))}"
        words.append(word)
        if len(words) >= int(rng.integers(8, 18)):
            sentences.append(" ".join(words).capitalize() + ("," if rng.random() < quality else "") + ".")
            words = []
    if words:
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def synthetic_essays(per_prompt: dict[int, int], *, seed: int = 3) -> pd.DataFrame:
    """ASAP-format rows: prompts with their ASAP score ranges, folds 0–4, scores driven by latent quality."""
    from learnloop.datasets import PROMPT_SCORE_RANGES

    rng = np.random.default_rng(seed)
    rows, essay_id = [], 1
    for prompt, count in per_prompt.items():
        low, high = PROMPT_SCORE_RANGES[prompt]
        for quality in rng.beta(2.0, 2.0, size=count):
            score = int(np.clip(round(low + quality * (high - low) + rng.normal(0, 0.3)), low, high))
            rows.append({"essay_id": essay_id, "essay_set": prompt, "fold": essay_id % 5,
                         "essay": synthetic_essay(float(quality), rng), "domain1_score": score,
                         "rater1_domain1": score, "rater2_domain1": score})
            essay_id += 1
    return pd.DataFrame(rows)


def write_tsv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return path
