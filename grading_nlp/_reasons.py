"""Instructor-facing reasons: which rubric signals of an essay stand out against the prompt's graded essays.

A signal is reported when the essay sits in the tails of the prompt's training essays (below the 5th or above
the 95th percentile) or far from the median, ranked by how strongly the signal goes with the score on this
prompt (its correlation with the grade). The sentence says the value, what is typical, and which way the
signal pushes the grade, in rubric words rather than feature names.
"""

from __future__ import annotations

import math

import numpy as np

# feature → (rubric label, how to show the raw value)
_SIGNALS: dict[str, tuple[str, str]] = {
    "log_words": ("Length", "words"),
    "log_unique_words": ("Vocabulary range", "distinct words"),
    "spelling_error_ratio": ("Spelling", "percent of words misspelled"),
    "words_per_sentence": ("Sentence length", "words per sentence"),
    "long_word_ratio": ("Word choice", "percent long words (7+ letters)"),
    "distinct_marker_types": ("Organisation", "kinds of transition words"),
    "adjacent_sentence_overlap": ("Cohesion", "word overlap between adjacent sentences"),
    "comma_per_word": ("Punctuation", "commas per 100 words"),
    "lowercase_sentence_start_ratio": ("Capitalisation", "percent of sentences starting lowercase"),
    "similarity_to_high_scorers": ("Content", "similarity to high-scoring essays"),
    "text_ngram_score": ("Wording", "match with the wording of graded essays"),
}


def _display(feature: str, value: float) -> str:
    if feature.startswith("log_"):
        return f"{math.expm1(value):.0f}"
    if feature in {"spelling_error_ratio", "long_word_ratio", "lowercase_sentence_start_ratio"}:
        return f"{100 * value:.1f}"
    if feature == "comma_per_word":
        return f"{100 * value:.1f}"
    if feature in {"similarity_to_high_scorers", "adjacent_sentence_overlap", "text_ngram_score"}:
        return f"{value:.2f}"
    return f"{value:.1f}"


def explain(feature_names: tuple[str, ...], values: np.ndarray, reference: dict[str, np.ndarray],
            *, limit: int = 3) -> list[str]:
    """Up to ``limit`` sentences naming the rubric signals that drove this grade."""
    candidates: list[tuple[float, str]] = []
    for i, name in enumerate(feature_names):
        if name not in _SIGNALS:
            continue
        median, p05, p95 = reference["median"][i], reference["p05"][i], reference["p95"][i]
        corr = float(reference["corr"][i])
        spread = max(p95 - p05, 1e-9)
        offset = (values[i] - median) / spread  # ~±0.5 at the tails
        if abs(offset) < 0.25 or abs(corr) < 0.1:
            continue
        label, unit = _SIGNALS[name]
        direction = "higher" if values[i] > median else "lower"
        effect = "raises" if (values[i] > median) == (corr > 0) else "lowers"
        sentence = (f"{label}: {_display(name, values[i])} {unit}, {direction} than typical for this prompt "
                    f"(median {_display(name, median)}); this {effect} the suggested grade.")
        candidates.append((abs(offset) * abs(corr), sentence))
    candidates.sort(key=lambda item: -item[0])
    reasons = [sentence for _, sentence in candidates[:limit]]
    if not reasons:
        reasons.append("No rubric signal stands out: length, vocabulary, spelling and content are typical of "
                       "essays graded near this score for this prompt.")
    return reasons


def out_of_range_signals(feature_names: tuple[str, ...], values: np.ndarray,
                         reference: dict[str, np.ndarray]) -> list[str]:
    """Signals outside anything seen in the prompt's graded essays (a reason to review, whatever the score)."""
    notes = []
    checks = {"log_words": "far longer or shorter", "spelling_error_ratio": "far more misspelled words",
              "similarity_to_high_scorers": "unlike any graded essay"}
    for i, name in enumerate(feature_names):
        if name not in checks:
            continue
        low, high = reference["p01"][i], reference["p99"][i]
        margin = 0.25 * max(high - low, 1e-9)
        too_many_errors = name == "spelling_error_ratio" and values[i] > high + margin
        odd_length = name == "log_words" and not (low - margin <= values[i] <= high + margin)
        if too_many_errors or odd_length:
            notes.append(f"Unusual essay: {checks[name]} than the graded essays of this prompt; check it by hand.")
        elif name == "similarity_to_high_scorers" and values[i] < low - margin:
            notes.append(f"Unusual essay: its wording is {checks[name]} of this prompt (off topic?); "
                         "check it by hand.")
    return notes
