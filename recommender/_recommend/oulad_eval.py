"""Offline evaluation of next-item recommendation on OULAD clicks with a temporal split.

For each presentation with click data and each cutoff day d (every 28 days from day 28 while d + 7 fits in
the presentation), every scorer sees clicks before d only and ranks the items each learner has not opened
yet; the truth is the set of items that learner first opens in [d, d + 7). Learners with no such item at a
cutoff are not scored. NDCG@10 (binary gains) and recall@10 (hits / min(|truth|, 10)) are averaged over all
(learner, cutoff) lists; ``n_users`` counts those lists.

``oracle_next_week_popularity`` is a reference line, not a scorer: items ranked by how many *other* learners first
open them in the coming week (it reads the future). A ranking that is the same for every learner of a course can
hardly beat a perfect forecast of next week's opens (not a strict bound: the learner's own opens are left out and
the item order that maximises mean NDCG need not be the popularity order), so the line shows how much of the gap
to a target is left to personalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recommender._recommend import rankers
from recommender._recommend.clicks import CourseClicks, oulad_course_clicks

PRESENTATIONS = (("AAA", "2013J"), ("AAA", "2014J"), ("BBB", "2013B"))
CUTOFF_STEP_DAYS = 28
K = 10
SCORERS: dict[str, Callable[[CourseClicks, int], np.ndarray]] = {
    "popularity": rankers.popularity,
    "itemknn": rankers.itemknn,
    "popularity_recent": rankers.popularity_recent,
    "learnloop": rankers.learnloop_scores,  # replaced per evaluation by the learned ranker (see evaluate_courses)
}
BASELINES = ("popularity", "itemknn", "popularity_recent")


def ranking_metrics(scores: np.ndarray, seen: np.ndarray, truth: np.ndarray, k: int = K):
    """Per-row NDCG@k and recall@k of ``scores`` (already-seen items never ranked) against ``truth``."""
    masked = np.where(seen, -np.inf, scores.astype(np.float64))
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(truth, top, axis=1) & ~np.take_along_axis(seen, top, axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discount[: top.shape[1]]).sum(1)  # a course may hold fewer than k items
    n_true = truth.sum(1)
    ideal = np.cumsum(discount)[np.minimum(n_true, k) - 1]
    return dcg / ideal, hits.sum(1) / np.minimum(n_true, k)


def cutoffs_of(course: CourseClicks) -> list[int]:
    return list(range(CUTOFF_STEP_DAYS, course.length_days - rankers.HORIZON_DAYS + 1, CUTOFF_STEP_DAYS))


def evaluate_courses(
    courses: list[CourseClicks], *, progress: Callable[[str], None] | None = None, learned: bool = True
) -> dict:
    """``learnloop`` is the learned ranker under the temporal protocol of :mod:`learned` (``learned=False``:
    the transition heuristic, which needs no fitting)."""
    from recommender._recommend import learned as learned_ranker

    scorers = dict(SCORERS)
    if learned:
        scorers["learnloop"] = learned_ranker.temporal_scorer(courses, progress=progress)
    totals = {name: {"ndcg@10": 0.0, "recall@10": 0.0} for name in scorers}
    per_course_ndcg: dict[str, dict[str, float]] = {}
    n_lists = 0
    per_course: dict[str, int] = {}
    oracle: dict[str, float] = {}
    for course in courses:
        for day in cutoffs_of(course):
            seen = course.seen(day)
            truth = course.first_clicked_between(day, day + rankers.HORIZON_DAYS) & ~seen
            rows = truth.any(1)
            if not rows.any():
                continue
            for name, scorer in scorers.items():
                ndcg, recall = ranking_metrics(scorer(course, day)[rows], seen[rows], truth[rows])
                totals[name]["ndcg@10"] += float(ndcg.sum())
                course_sums = per_course_ndcg.setdefault(course.course_id, {})
                course_sums[name] = course_sums.get(name, 0.0) + float(ndcg.sum())
                totals[name]["recall@10"] += float(recall.sum())
            # Reference line for same-for-everyone rankings: every other learner's first opens of the coming week
            # (uses the future, so it is never a scorer).
            next_week = truth.sum(0)[None, :] - truth
            ndcg, _ = ranking_metrics(next_week[rows], seen[rows], truth[rows])
            oracle[course.course_id] = oracle.get(course.course_id, 0.0) + float(ndcg.sum())
            n_lists += int(rows.sum())
            per_course[course.course_id] = per_course.get(course.course_id, 0) + int(rows.sum())
            if progress is not None:
                progress(f"{course.course_id} day {day}")
    means = {
        metric: {name: round(totals[name][metric] / max(n_lists, 1), 4) for name in scorers}
        for metric in ("ndcg@10", "recall@10")
    }
    best_baseline = max(BASELINES, key=lambda name: means["ndcg@10"][name])
    return {
        **means,
        "n_users": n_lists,
        "best_baseline": best_baseline,
        "learnloop_vs_best_baseline": round(
            means["ndcg@10"]["learnloop"] / max(means["ndcg@10"][best_baseline], 1e-12), 3
        ),
        "lists_per_course": per_course,
        "ndcg@10_per_course": {
            course_id: {name: round(total / per_course[course_id], 4) for name, total in sums.items()}
            for course_id, sums in per_course_ndcg.items()
        },
        "oracle_next_week_popularity": {
            "ndcg@10": round(sum(oracle.values()) / max(n_lists, 1), 4),
            "per_course": {course_id: round(total / per_course[course_id], 4) for course_id, total in oracle.items()},
        },
        "cutoff_days": f"every {CUTOFF_STEP_DAYS} days from day {CUTOFF_STEP_DAYS}; horizon {rankers.HORIZON_DAYS} days",
    }


def evaluate_oulad(root=None, *, progress: Callable[[str], None] | None = None) -> dict:
    """The report of ``learnloop eval recommend``."""
    from learnloop.datasets import load_oulad
    from learnloop.errors import Unavailable

    tables = load_oulad(root)
    courses = oulad_course_clicks(tables, list(PRESENTATIONS))
    if not courses:
        raise Unavailable(
            "no click data (studentVle) for AAA 2013J / AAA 2014J / BBB 2013B in the OULAD folder"
        )
    return evaluate_courses(courses, progress=progress)
