"""Handcrafted essay features: the ONE function that training and serving both call.

Pure Python + numpy (no torch, no sklearn) so the serving process can import it cheaply. Every feature
is a property of the text alone; features fitted on a prompt's graded essays live in ``_prompt_model``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache

import numpy as np

# ASAP anonymises names, places, numbers… as @PERSON1, @CAPS3, @NUM2. The digit only numbers the
# distinct entity within one essay, so it is dropped: renaming @PERSON1 to @PERSON2 must not move a grade.
_PLACEHOLDER = re.compile(r"@([A-Z]+)\d*")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_PARAGRAPH = re.compile(r"\n\s*\n|\t|\s{4,}")

# Discourse markers grouped by the rubric signal they carry (organisation, argument, evidence).
_SEQUENCE = ("first", "firstly", "second", "secondly", "third", "thirdly", "finally", "lastly", "next",
             "then", "afterwards", "meanwhile", "eventually", "later")
_CONTRAST = ("however", "although", "though", "whereas", "nevertheless", "nonetheless", "despite",
             "instead", "otherwise", "yet", "but")
_CAUSE = ("because", "therefore", "thus", "consequently", "hence", "since", "so")
_ADDITION = ("moreover", "furthermore", "additionally", "also", "besides", "addition")
_EXAMPLE = ("example", "instance", "such", "including", "specifically", "illustrate")
_CONCLUSION = ("conclusion", "overall", "summary", "conclude", "ultimately")
_OPINION = ("think", "believe", "opinion", "feel", "agree", "disagree", "should")
_STOPWORD_TEXT = (
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those i you he she we they me him her us them my your his our their not no do does did have has had "
    "will would can could shall should may might must so than too very just there here what which who whom"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars", "log_words", "log_sentences", "log_unique_words",
    "words_per_sentence", "sentence_length_std", "max_sentence_words",
    "mean_word_length", "word_length_std", "long_word_ratio", "syllables_per_word", "flesch_kincaid_grade",
    "type_token_ratio", "guiraud_index", "hapax_ratio", "stopword_ratio",
    "spelling_error_ratio", "log_spelling_errors", "unique_misspelled_ratio",
    "lowercase_i_ratio", "lowercase_sentence_start_ratio", "all_caps_word_ratio", "repeated_word_ratio",
    "comma_per_word", "period_per_word", "question_per_word", "exclamation_per_word", "quote_per_word",
    "apostrophe_per_word", "semicolon_colon_per_word", "paren_dash_per_word", "digit_ratio",
    "placeholder_ratio", "person_placeholder_ratio",
    "sequence_markers", "contrast_markers", "cause_markers", "addition_markers", "example_markers",
    "conclusion_markers", "opinion_markers", "distinct_marker_types",
    "adjacent_sentence_overlap", "log_paragraphs",
)


@lru_cache(maxsize=1)
def _known_words() -> frozenset[str]:
    # pyspellchecker ships an English frequency list inside the wheel: nothing is fetched at run time.
    from spellchecker import SpellChecker

    return frozenset(SpellChecker(language="en", distance=1).word_frequency.dictionary)


def normalise_text(text: str) -> str:
    """Canonical form used by every feature: placeholder numbers dropped, whitespace runs kept as is."""
    return _PLACEHOLDER.sub(lambda m: "@" + m.group(1), text)


def _syllables(word: str) -> int:
    groups = len(_VOWEL_GROUPS.findall(word))
    if word.endswith("e") and groups > 1:
        groups -= 1
    return max(groups, 1)


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if _WORD.search(p)]


def handcrafted_features(text: str) -> np.ndarray:
    """The feature vector of one essay (order = ``FEATURE_NAMES``), float64, finite for any input string."""
    text = normalise_text(text)
    placeholders = _PLACEHOLDER.findall(text)
    words = _WORD.findall(_PLACEHOLDER.sub(" ", text))
    lower = [w.lower() for w in words]
    n_words = len(words)
    n_tokens = max(n_words + len(placeholders), 1)
    nw = max(n_words, 1)
    sentences = _sentences(text)
    sentence_words = [len(_WORD.findall(s)) for s in sentences] or [0]
    word_lengths = np.array([len(w) for w in words], dtype=float) if words else np.zeros(1)
    counts = Counter(lower)
    known = _known_words()
    alpha = [w for w in lower if w.isalpha() or "'" in w]
    misspelled = [w for w in alpha if w.replace("'", "") not in known and w not in known]
    syllables = sum(_syllables(w) for w in lower) if lower else 0
    wps = n_words / max(len(sentences), 1)
    spw = syllables / nw
    marker_hits = [sum(counts[m] for m in group) for group in
                   (_SEQUENCE, _CONTRAST, _CAUSE, _ADDITION, _EXAMPLE, _CONCLUSION, _OPINION)]
    overlaps = []
    sentence_sets = [{w.lower() for w in _WORD.findall(s)} - _STOPWORDS for s in sentences]
    for a, b in zip(sentence_sets, sentence_sets[1:], strict=False):
        if a and b:
            overlaps.append(len(a & b) / math.sqrt(len(a) * len(b)))
    repeats = sum(1 for a, b in zip(lower, lower[1:], strict=False) if a == b)
    starts_lower = sum(1 for s in sentences if s[:1].islower())
    values = (
        math.log1p(len(text)), math.log1p(n_words), math.log1p(len(sentences)), math.log1p(len(counts)),
        wps, float(np.std(sentence_words)), float(max(sentence_words)),
        float(word_lengths.mean()), float(word_lengths.std()), float((word_lengths >= 7).mean()) if words else 0.0,
        spw, 0.39 * wps + 11.8 * spw - 15.59 if words else 0.0,
        len(counts) / nw, len(counts) / math.sqrt(nw), sum(1 for c in counts.values() if c == 1) / nw,
        sum(counts[s] for s in _STOPWORDS) / nw,
        len(misspelled) / nw, math.log1p(len(misspelled)), len(set(misspelled)) / max(len(counts), 1),
        sum(1 for w in words if w == "i") / nw, starts_lower / max(len(sentences), 1),
        sum(1 for w in words if len(w) > 1 and w.isupper()) / nw, repeats / nw,
        text.count(",") / nw, text.count(".") / nw, text.count("?") / nw, text.count("!") / nw,
        (text.count('"') + text.count("\u201c") + text.count("\u201d")) / nw,
        (text.count("'") + text.count("\u2019")) / nw, (text.count(";") + text.count(":")) / nw,
        (text.count("(") + text.count("-")) / nw, sum(c.isdigit() for c in text) / max(len(text), 1),
        len(placeholders) / n_tokens, sum(1 for p in placeholders if p == "PERSON") / n_tokens,
        *(math.log1p(h) for h in marker_hits), float(sum(1 for h in marker_hits if h)),
        float(np.mean(overlaps)) if overlaps else 0.0, math.log1p(len(_PARAGRAPH.split(text.strip()))),
    )
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def handcrafted_matrix(texts: list[str]) -> np.ndarray:
    """Rows of ``handcrafted_features`` for many essays."""
    if not texts:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.vstack([handcrafted_features(t) for t in texts])
