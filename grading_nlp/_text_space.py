"""TF-IDF spaces of word 1–2-grams and character 2–5-grams (a linear stand-in for string kernels).

Counting character n-grams is the slow part (~1 min per prompt on 2 busy cores), so evaluation counts every
essay of a prompt once with an open vocabulary and each fold then keeps the terms that occur often enough in
*its training rows* and fits IDF on them — exactly what fitting the vectorizers on the training rows gives.
The fitted space keeps vectorizers with that fixed vocabulary, so grading one new essay needs no refit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

WORD_MIN_DF = 2
CHAR_MIN_DF = 3


def _word_vectorizer(vocabulary=None):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, 2), lowercase=True, vocabulary=vocabulary, dtype=np.float64)


def _char_vectorizer(vocabulary=None):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=True, vocabulary=vocabulary,
                           dtype=np.float64)


@dataclass
class EssayCounts:
    """Raw n-gram counts of a set of essays with an open vocabulary (rows = essays)."""

    word: sparse.csr_matrix
    char: sparse.csr_matrix
    word_terms: np.ndarray
    char_terms: np.ndarray

    def rows(self, index: np.ndarray) -> EssayCounts:
        return EssayCounts(self.word[index], self.char[index], self.word_terms, self.char_terms)


def count_essays(texts: list[str]) -> EssayCounts:
    """Count word and character n-grams of normalised essays (vocabulary = every term seen)."""
    word, char = _word_vectorizer(), _char_vectorizer()
    word_counts = word.fit_transform(texts).tocsr()
    char_counts = char.fit_transform(texts).tocsr()
    return EssayCounts(word_counts, char_counts, word.get_feature_names_out(), char.get_feature_names_out())


@dataclass
class TextSpace:
    """A fitted TF-IDF space: fixed vocabularies + IDF weights fitted on one set of training essays."""

    word_terms: np.ndarray
    char_terms: np.ndarray
    word_idf: np.ndarray
    char_idf: np.ndarray
    # Vectorizers over the fixed vocabularies, built on first use and kept: rebuilding the two term→index dicts
    # per call was most of the CPU of grading one essay.
    _vectorizers: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_vectorizers": None}  # saved models hold the vocabularies once

    @property
    def dimension(self) -> int:
        return len(self.word_terms) + len(self.char_terms)

    def _weight(self, counts: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
        counts = counts.tocsr(copy=True).astype(np.float64)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf
        weighted = counts @ sparse.diags(idf)
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sparse.csr_matrix(sparse.diags(1.0 / norms) @ weighted)

    def transform_counts(self, counts: EssayCounts, word_cols: np.ndarray, char_cols: np.ndarray):
        """TF-IDF rows from open-vocabulary counts, given the columns this space kept."""
        return sparse.hstack([
            self._weight(counts.word[:, word_cols], self.word_idf),
            self._weight(counts.char[:, char_cols], self.char_idf),
        ]).tocsr()

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        """TF-IDF rows of new (normalised) essays."""
        if self._vectorizers is None:
            word_vectorizer = _word_vectorizer({t: i for i, t in enumerate(self.word_terms)})
            char_vectorizer = _char_vectorizer({t: i for i, t in enumerate(self.char_terms)})
            word_vectorizer.transform([""]), char_vectorizer.transform([""])  # validate vocabularies once
            self._vectorizers = (word_vectorizer, char_vectorizer)
        word_vectorizer, char_vectorizer = self._vectorizers
        word = word_vectorizer.transform(texts)
        char = char_vectorizer.transform(texts)
        return sparse.hstack([self._weight(word, self.word_idf), self._weight(char, self.char_idf)]).tocsr()


def fit_text_space(counts: EssayCounts, train_rows: np.ndarray) -> tuple[TextSpace, np.ndarray, np.ndarray]:
    """Fit a space on ``train_rows`` of ``counts``; returns it and the kept word/char columns of ``counts``."""

    def keep(matrix: sparse.csr_matrix, min_df: int) -> tuple[np.ndarray, np.ndarray]:
        sub = matrix[train_rows]
        df = np.asarray((sub > 0).sum(axis=0)).ravel()
        cols = np.flatnonzero(df >= min_df)
        n = sub.shape[0]
        idf = np.log((1.0 + n) / (1.0 + df[cols])) + 1.0  # smooth idf, as sklearn's TfidfTransformer
        return cols, idf

    word_cols, word_idf = keep(counts.word, WORD_MIN_DF)
    char_cols, char_idf = keep(counts.char, CHAR_MIN_DF)
    space = TextSpace(counts.word_terms[word_cols], counts.char_terms[char_cols], word_idf, char_idf)
    return space, word_cols, char_cols
