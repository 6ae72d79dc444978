"""One essay-scoring model per prompt: fitting, ordinal thresholds, conformal intervals and reasons.

``full`` (enough graded essays): a ridge on TF-IDF word/char n-grams gives a text score (out-of-fold on the
training essays, so the next stage does not see an overfit value), then boosted trees score
[handcrafted features, similarity to high/low scorers, text score]. ``few_shot`` (a new prompt with a few dozen
graded essays): handcrafted features only → mean of a ridge and shallow trees; n-grams overfit at that size.

Scores are regressed on the prompt's scale mapped to [0, 1]; the cut points between score levels come from a
dev split (ordinal treatment): each tuned for QWK, one spread correction, or plain rounding, whichever wins an
honest 2-fold comparison on that split; split-conformal residuals on the same dev split give intervals. Few-shot
models only get the spread correction (from cross-validated predictions), which undoes regression to the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grading_nlp._features import FEATURE_NAMES, handcrafted_matrix, normalise_text
from grading_nlp._text_space import EssayCounts, TextSpace, count_essays, fit_text_space
from grading_nlp.data import ModelKind

MIN_FEW_SHOT_ESSAYS = 20  # below this no model is trained: "needs manual grading"
MIN_FULL_MODEL_ESSAYS = 300  # n-grams + trees need a few hundred essays (dev split included)
COVERAGE = 0.8  # target coverage of the conformal interval
REVIEW_QUANTILE = 0.7  # the widest 30% of intervals on the dev split go to the instructor first
TEXT_RIDGE_ALPHA = 1.0
TEXT_RIDGE_ALPHAS = (0.5, 1.0, 2.0)  # the inner-CV error picks one per fit
HEAD_SEEDS = 3  # boosted heads with different subsample seeds, averaged
FEW_SHOT_RIDGE_ALPHA = 30.0
SIMILARITY_FEATURES = ("similarity_to_high_scorers", "similarity_to_low_scorers")
TEXT_SCORE_FEATURE = "text_ngram_score"
_SIGMA_FLOOR = 0.03  # in [0, 1] units: keeps intervals finite when the two scorers agree exactly


def choose_model_kind(n_graded: int) -> ModelKind | None:
    """The learner for a prompt with ``n_graded`` instructor-graded essays (None: too few to train any)."""
    if n_graded < MIN_FEW_SHOT_ESSAYS:
        return None
    return ModelKind.full if n_graded >= MIN_FULL_MODEL_ESSAYS else ModelKind.few_shot


def _qwk(truth: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(np.unique(np.r_[truth, predicted])) < 2:
        return 1.0 if np.array_equal(truth, predicted) else 0.0
    return float(cohen_kappa_score(truth, predicted, weights="quadratic"))


def to_scores(values: np.ndarray, thresholds: np.ndarray, score_range: tuple[int, int]) -> np.ndarray:
    """Map continuous predictions on the prompt's scale to integer scores with ordered cut points."""
    low, high = score_range
    return np.clip(low + np.searchsorted(np.sort(thresholds), values, side="right"), low, high).astype(int)


def default_thresholds(score_range: tuple[int, int]) -> np.ndarray:
    """Cut points of plain rounding: k + 0.5 between every pair of adjacent scores."""
    low, high = score_range
    return np.arange(low, high, dtype=np.float64) + 0.5


def tune_thresholds(values: np.ndarray, truth: np.ndarray, score_range: tuple[int, int]) -> np.ndarray:
    """Coordinate search of the cut points that maximise QWK on a dev split (starts from plain rounding).

    Only cut points inside the observed range move; a step must beat the current QWK to be taken, so with a
    flat objective the thresholds stay at plain rounding.
    """
    thresholds = default_thresholds(score_range)
    best = _qwk(truth, to_scores(values, thresholds, score_range))
    observed_low, observed_high = truth.min(), truth.max()
    for _ in range(2):
        for i, centre in enumerate(thresholds.copy()):
            if not (observed_low - 1 <= centre <= observed_high + 1):
                continue
            for candidate in np.linspace(centre - 0.5, centre + 0.5, 11):
                trial = thresholds.copy()
                trial[i] = candidate
                trial = np.sort(trial)
                score = _qwk(truth, to_scores(values, trial, score_range))
                if score > best + 1e-9:
                    best, thresholds = score, trial
    return thresholds


STRETCH_BOUNDS = (1.0, 2.0)  # bounds of the spread correction of shrunk predictions


def stretched_thresholds(values: np.ndarray, truth: np.ndarray, score_range: tuple[int, int]) -> np.ndarray:
    """Rounding cut points for predictions that regression shrank towards the mean.

    Stretching predictions about their mean by ``std(truth) / std(values)`` (bounded by ``STRETCH_BOUNDS``)
    before plain rounding is the same as pulling the cut points towards that mean, which is what ships: one
    parameter, so a few dozen essays can set it where they cannot tune every cut point.
    """
    base = default_thresholds(score_range)
    spread = float(np.std(values))
    if spread <= 0:
        return base
    factor = float(np.clip(np.std(truth) / spread, *STRETCH_BOUNDS))
    centre = float(np.mean(values))
    return centre + (base - centre) / factor


def choose_thresholds(values: np.ndarray, truth: np.ndarray, score_range: tuple[int, int], *, seed: int = 0
                      ) -> tuple[np.ndarray, str]:
    """Cut points for a full model from its dev split: every cut point tuned, one spread correction
    (``stretched_thresholds``), or plain rounding — whichever scores the best QWK on one half of the dev split
    when fitted on the other (both ways round). Free cut points can overfit a few hundred dev essays on a
    short scale; the honest 2-fold comparison decides per prompt. Returns the cut points fitted on the whole
    dev split and the name of the rule."""
    rules = {"tuned": tune_thresholds, "stretched": stretched_thresholds,
             "rounded": lambda v, t, r: default_thresholds(r)}
    half = np.random.default_rng(seed).permutation(len(values)) % 2 == 0
    cross = {}
    for name, rule in rules.items():
        cross[name] = np.mean([_qwk(truth[~part], to_scores(values[~part], rule(values[part], truth[part], score_range),
                                                              score_range)) for part in (half, ~half)])
    best = max(cross, key=lambda name: cross[name] + 1e-9 * (name == "tuned"))
    return rules[best](values, truth, score_range), best


@dataclass
class _Scorers:
    """The fitted learners of one model, before thresholds and calibration."""

    kind: ModelKind
    head: object  # sklearn regressor on the dense feature matrix, output in [0, 1] units
    text_space: TextSpace | None = None
    text_coef: np.ndarray | None = None
    text_intercept: float = 0.0
    centroids: np.ndarray | None = None  # rows: high-scorer and low-scorer TF-IDF centroids


def _similarities(tfidf, centroids: np.ndarray) -> np.ndarray:
    return np.asarray(tfidf @ centroids.T)


_INTERCEPT_COLUMN = 10.0  # a constant column stands in for the intercept; its penalty is then negligible


def _gram(tfidf) -> np.ndarray:
    """Linear kernel of TF-IDF rows plus the intercept column: with ~1,500 essays and ~100k n-grams the dual
    (n × n) ridge solves in milliseconds where the primal takes seconds per fit."""
    return np.asarray((tfidf @ tfidf.T).toarray()) + _INTERCEPT_COLUMN**2


def _dual_ridge(gram: np.ndarray, target: np.ndarray, alpha: float = TEXT_RIDGE_ALPHA) -> np.ndarray:
    return np.linalg.solve(gram + alpha * np.eye(len(gram)), target)


@dataclass
class _TextView:
    """TF-IDF rows of every essay a fit may use, in one space, and their Gram matrix (computed once)."""

    space: TextSpace
    tfidf: object  # scipy.sparse csr, rows aligned with the fit's essays
    gram: np.ndarray


def _text_view(counts: EssayCounts) -> _TextView:
    # The space (vocabulary, IDF) is fitted on all essays given to the fit, dev included: text statistics only,
    # no grades, so tuning on dev stays honest while the costly n-gram Gram matrix is computed once.
    space, word_cols, char_cols = fit_text_space(counts, np.arange(counts.word.shape[0]))
    tfidf = space.transform_counts(counts, word_cols, char_cols)
    return _TextView(space, tfidf, _gram(tfidf))


def _text_oof(gram: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Out-of-fold text-ridge scores of the fit's essays and the ridge penalty with the lowest inner-CV error."""
    from sklearn.model_selection import KFold

    best, best_alpha, best_error = None, TEXT_RIDGE_ALPHAS[0], np.inf
    splits = list(KFold(5, shuffle=True, random_state=seed).split(y))
    for alpha in TEXT_RIDGE_ALPHAS:
        oof = np.zeros(len(y))
        for inner_train, inner_test in splits:
            dual = _dual_ridge(gram[np.ix_(inner_train, inner_train)], y[inner_train], alpha)
            oof[inner_test] = gram[np.ix_(inner_test, inner_train)] @ dual
        error = float(np.mean((oof - y) ** 2))
        if error < best_error:
            best, best_alpha, best_error = oof, alpha, error
    return best, best_alpha


def _head(seed: int):
    from sklearn.ensemble import GradientBoostingRegressor, VotingRegressor

    trees = [GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.07, subsample=0.8,
                                       random_state=seed + 7919 * i) for i in range(HEAD_SEEDS)]
    if len(trees) == 1:
        return trees[0]
    return VotingRegressor([(f"trees{i}", t) for i, t in enumerate(trees)])


def _fit_scorers(kind: ModelKind, hand: np.ndarray, target: np.ndarray, view: _TextView | None,
                 rows: np.ndarray, *, seed: int = 0) -> _Scorers:
    from sklearn.ensemble import GradientBoostingRegressor, VotingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = target[rows]
    if kind is ModelKind.few_shot:
        # Averaging a strongly regularised linear model with shallow trees beat either alone at 50 essays.
        head = VotingRegressor([
            ("ridge", make_pipeline(StandardScaler(), Ridge(alpha=FEW_SHOT_RIDGE_ALPHA))),
            ("trees", GradientBoostingRegressor(n_estimators=100, max_depth=2, learning_rate=0.05, subsample=0.8,
                                                random_state=seed)),
        ])
        head.fit(hand[rows].astype(np.float32), y)
        return _Scorers(kind, head)

    tfidf, gram = view.tfidf[rows], view.gram[np.ix_(rows, rows)]
    text_oof, alpha = _text_oof(gram, y, seed)
    dual = _dual_ridge(gram, y, alpha)
    text_coef = np.asarray(tfidf.T @ dual).ravel()
    text_intercept = float(_INTERCEPT_COLUMN**2 * dual.sum())
    high, low = y >= np.quantile(y, 0.8), y <= np.quantile(y, 0.2)
    centroids = np.vstack([np.asarray(tfidf[high].mean(axis=0)).ravel(), np.asarray(tfidf[low].mean(axis=0)).ravel()])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    dense = np.c_[hand[rows], _similarities(tfidf, centroids), text_oof].astype(np.float32)
    head = _head(seed).fit(dense, y)
    return _Scorers(kind, head, view.space, text_coef, text_intercept, centroids)


def _dense_features(scorers: _Scorers, hand: np.ndarray, tfidf) -> tuple[np.ndarray, np.ndarray]:
    """The head's input matrix (float32) and the text ridge's own score (for disagreement)."""
    if scorers.kind is ModelKind.few_shot:
        return hand.astype(np.float32), np.full(len(hand), np.nan)
    text_score = np.asarray(tfidf @ scorers.text_coef).ravel() + scorers.text_intercept
    dense = np.c_[hand, _similarities(tfidf, scorers.centroids), text_score].astype(np.float32)
    return dense, text_score


def _sigma(kind: ModelKind, head_score: np.ndarray, text_score: np.ndarray) -> np.ndarray:
    # Disagreement between the n-gram ridge and the tree head is the locally adaptive difficulty.
    if kind is ModelKind.few_shot:
        return np.full(len(head_score), 1.0)
    return _SIGMA_FLOOR + np.abs(head_score - text_score)


@dataclass
class PromptModel:
    """Everything fitted for one prompt: scorers, cut points, conformal scale, reference statistics."""

    prompt_id: int
    score_range: tuple[int, int]
    kind: ModelKind
    scorers: _Scorers
    thresholds: np.ndarray
    conformal_quantile: float
    review_width: float
    feature_names: tuple[str, ...]
    reference: dict[str, np.ndarray]  # per dense feature: median, p05, p95, correlation with score
    n_train: int
    dev_qwk: float | None = None
    model_version: str = "unversioned"
    extra: dict = field(default_factory=dict)

    @property
    def span(self) -> int:
        low, high = self.score_range
        return max(high - low, 1)

    def dense(self, texts: list[str], hand: np.ndarray | None = None, counts: EssayCounts | None = None,
              word_cols=None, char_cols=None) -> tuple[np.ndarray, np.ndarray]:
        """Head inputs for normalised essays (from text, or from precomputed counts in evaluation)."""
        if hand is None:
            hand = handcrafted_matrix(texts)
        tfidf = None
        if self.kind is ModelKind.full:
            space = self.scorers.text_space
            tfidf = (space.transform_counts(counts, word_cols, char_cols) if counts is not None
                     else space.transform(texts))
        return _dense_features(self.scorers, hand, tfidf)

    def predict_unit(self, dense: np.ndarray, text_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous prediction in [0, 1] units and its conformal half-width (same units)."""
        head_score = np.asarray(self.scorers.head.predict(dense), dtype=np.float64)
        return head_score, self.conformal_quantile * _sigma(self.kind, head_score, text_score)

    def scores(self, unit: np.ndarray) -> np.ndarray:
        return to_scores(self.score_range[0] + unit * self.span, self.thresholds, self.score_range)

    def intervals(self, unit: np.ndarray, half_width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = self.scores(unit - half_width)
        high = self.scores(unit + half_width)
        return low, high


def covering_ratios(unit: np.ndarray, sigma: np.ndarray, truth: np.ndarray, thresholds: np.ndarray,
                    score_range: tuple[int, int]) -> np.ndarray:
    """Per essay, the smallest half-width (in units of its ``sigma``) whose interval of *integer* scores —
    ``to_scores`` of the band's two ends, as :meth:`PromptModel.intervals` reports it — contains the true score.

    The conformal quantile of these ratios gives intervals that cover the target share of essays on the score
    scale instructors see. Residuals of the continuous prediction would not: rounding both ends outward covers
    far more (0.95 measured for a 0.8 target on ASAP)."""
    low, high = score_range
    span = max(high - low, 1)
    cuts = np.sort(np.asarray(thresholds, dtype=np.float64))
    value = low + np.asarray(unit, dtype=np.float64) * span
    scale = np.asarray(sigma, dtype=np.float64) * span
    steps = np.asarray(truth).astype(int) - low
    # The band's top must reach the cut below the true score; its bottom must fall below the cut above it.
    below = np.where(steps > 0, cuts[np.clip(steps - 1, 0, len(cuts) - 1)], -np.inf)
    above = np.where(steps < len(cuts), cuts[np.clip(steps, 0, len(cuts) - 1)], np.inf)
    reach_up = (below - value) / scale
    reach_down = (value - above) / scale  # strictly below the cut above: the margin below makes it so
    # A relative margin so that ``unit ± ratio·sigma`` lands on the covering side after float rounding.
    return np.maximum(0.0, np.maximum(reach_up, reach_down)) * (1 + 1e-9)


def _conformal_quantile(ratios: np.ndarray) -> float:
    """Split-conformal quantile with the finite-sample correction (empty input: no interval information)."""
    if len(ratios) == 0:
        return float("inf")
    ordered = np.sort(ratios)
    rank = min(int(np.ceil((len(ordered) + 1) * COVERAGE)) - 1, len(ordered) - 1)
    return float(ordered[rank])


def _reference(dense: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    centred = dense - dense.mean(axis=0)
    spread = dense.std(axis=0) * y.std()
    corr = np.divide((centred * (y - y.mean())[:, None]).mean(axis=0), spread,
                     out=np.zeros(dense.shape[1]), where=spread > 0)
    return {"median": np.median(dense, axis=0), "p05": np.quantile(dense, 0.05, axis=0),
            "p95": np.quantile(dense, 0.95, axis=0), "p01": np.quantile(dense, 0.01, axis=0),
            "p99": np.quantile(dense, 0.99, axis=0), "corr": corr}


def fit_prompt_model(
    texts: list[str] | None,
    scores: np.ndarray,
    score_range: tuple[int, int],
    *,
    prompt_id: int,
    dev_mask: np.ndarray | None = None,
    kind: ModelKind | None = None,
    hand: np.ndarray | None = None,
    counts: EssayCounts | None = None,
    seed: int = 0,
) -> PromptModel:
    """Fit a prompt's model on graded essays.

    ``full``: learners fit on the non-dev essays score the dev essays to tune cut points and conformal width,
    then everything is refit on all essays. ``few_shot``: cross-validated residuals give the conformal width and
    cut points stay at plain rounding (a few dozen essays cannot tune them). ``hand``/``counts`` let evaluation
    pass cached features of exactly these essays.
    """
    from sklearn.model_selection import KFold

    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    kind = kind or choose_model_kind(n)
    if kind is None:
        raise ValueError(f"{n} graded essays; at least {MIN_FEW_SHOT_ESSAYS} are needed to train a model")
    low, high = score_range
    span = max(high - low, 1)
    target = (scores - low) / span
    normalised = None
    if hand is None or (kind is ModelKind.full and counts is None):
        normalised = [normalise_text(t) for t in texts]
    if hand is None:
        hand = handcrafted_matrix(normalised)
    if kind is ModelKind.full and counts is None:
        counts = count_essays(normalised)
    all_rows = np.arange(n)
    view = _text_view(counts) if kind is ModelKind.full else None

    def unit_predictions(scorers: _Scorers, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tfidf = view.tfidf[rows] if view is not None else None
        dense, text_score = _dense_features(scorers, hand[rows], tfidf)
        head_score = np.asarray(scorers.head.predict(dense), dtype=np.float64)
        return head_score, text_score, dense

    if kind is ModelKind.full:
        if dev_mask is None:
            dev_mask = np.random.default_rng(seed).random(n) < 0.2
        dev_rows, fit_rows = np.flatnonzero(dev_mask), np.flatnonzero(~dev_mask)
        tuning = _fit_scorers(kind, hand, target, view, fit_rows, seed=seed)
        head_dev, text_dev, _ = unit_predictions(tuning, dev_rows)
        thresholds, threshold_rule = choose_thresholds(low + head_dev * span, scores[dev_rows], score_range, seed=seed)
        dev_qwk = _qwk(scores[dev_rows], to_scores(low + head_dev * span, thresholds, score_range))
        sigma = _sigma(kind, head_dev, text_dev)
        ratios = covering_ratios(head_dev, sigma, scores[dev_rows], thresholds, score_range)
        scorers = _fit_scorers(kind, hand, target, view, all_rows, seed=seed)
    else:
        head_cv = np.zeros(n)
        for fit_rows, held_rows in KFold(5, shuffle=True, random_state=seed).split(all_rows):
            head_cv[held_rows] = unit_predictions(_fit_scorers(kind, hand, target, None, fit_rows), held_rows)[0]
        thresholds, threshold_rule = stretched_thresholds(low + head_cv * span, scores, score_range), "stretched"
        dev_qwk = _qwk(scores, to_scores(low + head_cv * span, thresholds, score_range))
        sigma = np.ones(n)
        ratios = covering_ratios(head_cv, sigma, scores, thresholds, score_range)
        scorers = _fit_scorers(kind, hand, target, None, all_rows, seed=seed)

    # Split-conformal quantile of the covering ratios, with the finite-sample correction.
    conformal_quantile = _conformal_quantile(ratios)
    # Honest calibration evidence for the registry gate: the quantile of one half of the split, checked on the other.
    halves = np.random.default_rng(seed).random(len(ratios)) < 0.5
    cross_coverage = np.mean(np.r_[ratios[~halves] <= _conformal_quantile(ratios[halves]),
                                   ratios[halves] <= _conformal_quantile(ratios[~halves])])
    widths = 2 * conformal_quantile * sigma * span
    _, _, dense_all = unit_predictions(scorers, all_rows)
    names = FEATURE_NAMES + ((*SIMILARITY_FEATURES, TEXT_SCORE_FEATURE) if kind is ModelKind.full else ())
    return PromptModel(
        prompt_id=prompt_id, score_range=score_range, kind=kind, scorers=scorers, thresholds=thresholds,
        conformal_quantile=conformal_quantile, review_width=float(np.quantile(widths, REVIEW_QUANTILE)),
        feature_names=names, reference=_reference(dense_all.astype(np.float64), target), n_train=n,
        dev_qwk=dev_qwk, extra={"interval_coverage_gap": float(abs(cross_coverage - COVERAGE)),
                                "threshold_rule": threshold_rule},
    )
