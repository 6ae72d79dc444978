"""The ASAP-AES evaluation protocol (NEA 5-fold) and the few-shot cold-start measurement.

For fold k: test = ``fold == k``, dev = ``fold == (k-1) mod 5`` (cut points and conformal width), train = the
rest; the model is refit on train + dev before it scores the test fold. QWK per prompt and fold, averaged over
folds, then the unweighted mean over prompts. Cold start: for each prompt and fold, 50 essays drawn from the
non-test folds train a model chosen by ``choose_model_kind`` (few-shot at that size), scored on the test fold.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from grading_nlp._features import handcrafted_matrix, normalise_text
from grading_nlp._model import _qwk, choose_model_kind, fit_prompt_model
from grading_nlp._text_space import EssayCounts, count_essays

COLD_START_ESSAYS = 50


def _cached(cache_dir: Path | None, name: str, texts: list[str], compute: Callable[[], object]):
    """Features of a list of essays, cached on disk by a hash of the texts and the feature code's name."""
    if cache_dir is None:
        return compute()
    import joblib

    digest = hashlib.sha256("\x1e".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    path = cache_dir / f"{name}-{digest}.joblib"
    if path.is_file():
        return joblib.load(path)
    value = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    joblib.dump(value, tmp)
    tmp.replace(path)
    return value


def score_range_for(prompt: int, scores: pd.Series, ranges: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """The rubric range of a prompt (ASAP's table; for other prompts the observed range)."""
    if prompt in ranges:
        return ranges[prompt]
    return int(scores.min()), int(scores.max())


def evaluate_essays(
    essays: pd.DataFrame,
    ranges: dict[int, tuple[int, int]],
    *,
    cache_dir: Path | None = None,
    cold_start: bool = True,
    folds: list[int] | None = None,
    advance: Callable[[str], None] | None = None,
) -> dict:
    """Run the protocol on ASAP-format essays; returns the JSON-ready report of ``learnloop eval essays``."""
    started = time.perf_counter()
    fold_ids = folds if folds is not None else sorted(int(f) for f in essays["fold"].unique())
    prompts = sorted(int(p) for p in essays["essay_set"].unique())
    qwk = {p: {} for p in prompts}
    cold = {p: {} for p in prompts}
    truth_all, predicted_all, covered, review, review_errors, auto_errors = [], [], [], [], [], []
    feature_version = "v1"
    for prompt in prompts:
        frame = essays[essays["essay_set"] == prompt].reset_index(drop=True)
        score_range = score_range_for(prompt, frame["domain1_score"], ranges)
        texts = [normalise_text(t) for t in frame["essay"].astype(str)]
        if advance:
            advance(f"prompt {prompt}: features")
        hand = _cached(cache_dir, f"hand-{feature_version}", texts, lambda t=texts: handcrafted_matrix(t))
        counts: EssayCounts = _cached(cache_dir, f"counts-{feature_version}", texts,
                                      lambda t=texts: count_essays(t))
        y = frame["domain1_score"].to_numpy()
        fold_of = frame["fold"].to_numpy()
        for k in fold_ids:
            if advance:
                advance(f"prompt {prompt}: fold {k}")
            test = np.flatnonzero(fold_of == k)
            fit_rows = np.flatnonzero(fold_of != k)
            if len(test) == 0 or len(fit_rows) == 0:
                continue
            dev_mask = fold_of[fit_rows] == (k - 1) % 5
            sub_counts = counts.rows(fit_rows)
            model = fit_prompt_model(None, y[fit_rows], score_range, prompt_id=prompt, dev_mask=dev_mask,
                                     hand=hand[fit_rows], counts=sub_counts, seed=k)
            word_cols = char_cols = None
            if model.scorers.text_space is not None:
                word_cols = np.searchsorted(counts.word_terms, model.scorers.text_space.word_terms)
                char_cols = np.searchsorted(counts.char_terms, model.scorers.text_space.char_terms)
            dense, text_score = model.dense([], hand=hand[test], counts=counts.rows(test),
                                            word_cols=word_cols, char_cols=char_cols)
            unit, half = model.predict_unit(dense, text_score)
            predicted = model.scores(unit)
            low, high = model.intervals(unit, half)
            qwk[prompt][k] = _qwk(y[test], predicted)
            if advance:
                advance(f"prompt {prompt}: fold {k} QWK {qwk[prompt][k]:.4f}")
            truth_all.append(y[test])
            predicted_all.append(predicted)
            covered.append((y[test] >= low) & (y[test] <= high))
            flagged = 2 * half * model.span > model.review_width
            review.append(flagged)
            errors = np.abs(y[test] - predicted) / model.span
            review_errors.append(errors[flagged])
            auto_errors.append(errors[~flagged])
            if cold_start and len(fit_rows) >= COLD_START_ESSAYS:
                rng = np.random.default_rng(1000 * prompt + k)
                sample = rng.choice(fit_rows, size=COLD_START_ESSAYS, replace=False)
                kind = choose_model_kind(len(sample))
                few = fit_prompt_model(None, y[sample], score_range, prompt_id=prompt, kind=kind,
                                       hand=hand[sample], seed=k)
                few_dense, few_text = few.dense([], hand=hand[test])
                cold[prompt][k] = _qwk(y[test], few.scores(few.predict_unit(few_dense, few_text)[0]))

    truth, predicted = np.concatenate(truth_all), np.concatenate(predicted_all)
    by_prompt = {str(p): round(float(np.mean(list(v.values()))), 4) for p, v in qwk.items() if v}
    cold_by_prompt = {str(p): round(float(np.mean(list(v.values()))), 4) for p, v in cold.items() if v}
    review_flags = np.concatenate(review)
    report = {
        "avg_qwk": round(float(np.mean(list(by_prompt.values()))), 4),
        "qwk_by_prompt": by_prompt,
        "exact": round(float(np.mean(truth == predicted)), 4),
        "adjacent": round(float(np.mean(np.abs(truth - predicted) <= 1)), 4),
        "cold_start_avg_qwk": round(float(np.mean(list(cold_by_prompt.values()))), 4) if cold_by_prompt else None,
        "cold_start_qwk_by_prompt": cold_by_prompt,
        "cold_start_essays": COLD_START_ESSAYS,
        "folds": [
            {"fold": k, "avg_qwk": round(float(np.mean([qwk[p][k] for p in prompts if k in qwk[p]])), 4),
             "qwk_by_prompt": {str(p): round(qwk[p][k], 4) for p in prompts if k in qwk[p]}}
            for k in fold_ids
        ],
        "interval_coverage": round(float(np.mean(np.concatenate(covered))), 4),
        "interval_target_coverage": 0.8,
        "needs_review_rate": round(float(np.mean(review_flags)), 4),
        "mean_abs_error_reviewed": round(float(np.mean(np.concatenate(review_errors))), 4)
        if review_flags.any() else None,
        "mean_abs_error_not_reviewed": round(float(np.mean(np.concatenate(auto_errors))), 4)
        if (~review_flags).any() else None,
        "n_essays": int(len(truth)),
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    return report
