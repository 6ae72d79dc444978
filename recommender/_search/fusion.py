"""Fusing lexical and dense rankings over one candidate set.

Both functions take, for the same candidates (position i = candidate i), a BM25 score and a dense score
(NaN where that retriever did not return the candidate) and return one fused score per candidate.
"""

from __future__ import annotations

import numpy as np

RRF_K = 60  # the constant of Cormack et al. (2009); larger flattens the rank discount


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the candidates; a retriever's missing candidates (NaN) get 0.

    When every returned score is equal (e.g. one candidate) they all get 1: they are that retriever's best.
    """
    out = np.zeros(scores.shape, dtype=np.float64)
    present = ~np.isnan(scores)
    if not present.any():
        return out
    low, high = scores[present].min(), scores[present].max()
    if high > low:
        out[present] = (scores[present] - low) / (high - low)
    else:
        out[present] = 1.0
    return out


def convex(bm25: np.ndarray, dense: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * minmax(dense) + (1 - alpha) * minmax(bm25)``; alpha=0 is BM25 alone, 1 is dense alone."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha * minmax(dense) + (1.0 - alpha) * minmax(bm25)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank by descending score; NaN (not retrieved) gets rank inf."""
    ranks = np.full(scores.shape, np.inf)
    present = np.flatnonzero(~np.isnan(scores))
    order = present[np.argsort(-scores[present], kind="stable")]
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def rrf(bm25: np.ndarray, dense: np.ndarray, *, k: int = RRF_K, alpha: float = 0.5) -> np.ndarray:
    """Weighted reciprocal rank fusion: ``alpha / (k + rank_dense) + (1 - alpha) / (k + rank_bm25)``."""
    return alpha / (k + _ranks(dense)) + (1.0 - alpha) / (k + _ranks(bm25))
