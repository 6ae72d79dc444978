"""Why a learner scores high, in words: the model's directional contribution of each feature group, phrased from
the learner's own values against the course cohort.

**Contribution** of a group for one learner = risk(learner) − risk(learner with that group's features set to the
course cohort's median), computed on the champion ONNX model itself (one batched run per group). Positive means
"this is where the learner differs from a typical classmate in a way the model reads as risk". Groups, not
single features, because the model's features come in families (``clicks_total_7d``, ``…_28d``, ``…_cum``) that
only make sense together and a sentence describes a family.

**Not drivers, by design**: background attributes (education, IMD decile, age band, disability) — nobody can act
on them and naming them as a reason invites stereotyping — and course-level features (identical for everyone in
a course, so they never separate a learner from the cohort).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.interventions.data import Driver

Values = Mapping[str, float]


def _ok(value) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def _n(value: float, noun: str, plural: str | None = None) -> str:
    count = int(round(value))
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _vs(ref: float | None, fmt: str = "{:.0f}") -> str:
    return f" (course median {fmt.format(ref)})" if _ok(ref) else ""


def inactivity_text(v: Values, ref: Values) -> str | None:
    days = v.get("days_since_last_activity")
    if _ok(days) and days >= 1:
        return f"no activity in {_n(days, 'day')}" + _vs(ref.get("days_since_last_activity"))
    active = v.get("active_days_28d")
    if _ok(active):
        return f"active on {int(round(active))} of the last 28 days" + _vs(ref.get("active_days_28d"))
    return None


def missed_text(v: Values, ref: Values) -> str | None:
    due, missed, late = v.get("n_due"), v.get("n_missed"), v.get("n_late")
    parts = []
    if _ok(due) and due > 0 and _ok(missed) and missed > 0:
        parts.append(f"{int(round(missed))} of {_n(due, 'assessment')} missed")
    if _ok(late) and late > 0:
        parts.append(f"{_n(late, 'assessment')} submitted late")
    if not parts and _ok(due) and due > 0 and _ok(v.get("n_submitted")):
        parts.append(f"{int(round(v['n_submitted']))} of {_n(due, 'assessment')} submitted")
    return "; ".join(parts) or None


def clicks_text(v: Values, ref: Values) -> str | None:
    if _ok(v.get("has_click_data")) and v["has_click_data"] == 0:
        return None
    for feature, span in (("clicks_total_28d", "in the last 28 days"), ("clicks_total_cum", "so far")):
        mine, typical = v.get(feature), ref.get(feature)
        if _ok(mine) and _ok(typical) and typical > 0:
            if mine == 0:
                return f"no clicks {span} (course median {typical:.0f})"
            change = mine / typical - 1
            if change <= -0.05:
                return f"clicks {span} {abs(change):.0%} below the course cohort ({mine:.0f} vs median {typical:.0f})"
            if change >= 0.05:
                return f"clicks {span} {change:.0%} above the course cohort ({mine:.0f} vs median {typical:.0f})"
    return None


def marks_text(v: Values, ref: Values) -> str | None:
    parts = []
    score = v.get("score_mean")
    if _ok(score):
        parts.append(f"average mark {score:.0f}" + _vs(ref.get("score_mean")))
    failed = v.get("n_failed_scores")
    if _ok(failed) and failed > 0:
        parts.append(f"{_n(failed, 'marked assessment')} failed")
    return "; ".join(parts) or None


def registration_text(v: Values, ref: Values) -> str | None:
    if _ok(v.get("is_unregistered")) and v["is_unregistered"] > 0:
        return "has unregistered from the course"
    day = v.get("registration_day")
    if _ok(day) and day > 0:
        return f"registered {_n(day, 'day')} after the course started"
    return None


def history_text(v: Values, ref: Values) -> str | None:
    parts = []
    attempts = v.get("num_of_prev_attempts")
    if _ok(attempts) and attempts > 0:
        parts.append(f"{_n(attempts, 'previous attempt')} at this module")
    failed = v.get("prior_fail_or_withdrawn")
    if _ok(failed) and failed > 0:
        parts.append(f"did not pass {_n(failed, 'earlier presentation')}")
    return "; ".join(parts) or None


def workload_text(v: Values, ref: Values) -> str | None:
    credits = v.get("studied_credits")
    if _ok(credits):
        return f"studying {credits:.0f} credits this term" + _vs(ref.get("studied_credits"))
    return None


@dataclass(frozen=True)
class DriverGroup:
    key: str
    features: tuple[str, ...]
    text: Callable[[Values, Values], str | None]


_CLICK_KINDS = ("total", "forumng", "homepage", "oucontent", "subpage", "quiz", "resource", "url", "other")
GROUPS: tuple[DriverGroup, ...] = (
    DriverGroup("inactivity", ("days_since_last_activity", "active_days_7d", "active_days_28d", "current_streak",
                               "longest_streak"), inactivity_text),
    DriverGroup("missed_assessments", ("n_missed", "n_due", "n_submitted", "n_late", "n_banked"), missed_text),
    DriverGroup("low_clicks", (*(f"clicks_{k}_{w}" for k in _CLICK_KINDS for w in ("7d", "14d", "28d", "cum")),
                               "clicks_28d_cohort_z", "clicks_cum_cohort_z"), clicks_text),
    DriverGroup("marks", ("score_mean", "score_weighted_mean", "weighted_points", "n_scores_returned",
                          "n_failed_scores"), marks_text),
    DriverGroup("late_registration", ("registration_day", "days_registered", "is_unregistered"), registration_text),
    DriverGroup("history", ("num_of_prev_attempts", "prior_presentations", "prior_passes", "prior_fail_or_withdrawn"),
                history_text),
    DriverGroup("workload", ("studied_credits",), workload_text),
)


def cohort_reference(frame: pd.DataFrame, courses: Sequence[str], *, min_cohort: int,
                     select: np.ndarray | None = None) -> pd.DataFrame:
    """The median of every feature over each row's course (over all rows when the course has fewer than
    ``min_cohort``). ``frame`` holds the features of every scored enrollment, rows aligned with ``courses``;
    ``select`` (a boolean mask or positions) returns the references of those rows only."""
    keys = np.asarray(list(courses), dtype=object)
    per_course = frame.groupby(keys).median()
    sizes = pd.Series(keys).value_counts()
    small = per_course.index.isin(sizes[sizes < min_cohort].index)
    if small.any():
        per_course.loc[small] = np.tile(frame.median().to_numpy(), (int(small.sum()), 1))
    chosen = keys if select is None else keys[select]
    reference = per_course.reindex(chosen)
    reference.index = frame.index if select is None else frame.index[select]
    return reference


def explain(predict: Callable[[pd.DataFrame], np.ndarray], rows: pd.DataFrame, reference: pd.DataFrame, *,
            risk: np.ndarray | None = None, max_drivers: int = 3, min_contribution: float = 0.01,
            groups: Sequence[DriverGroup] = GROUPS) -> list[list[Driver]]:
    """The top drivers of each row (largest contribution first), as sentences.

    ``predict(frame) -> P(at risk)`` is the model; ``reference`` holds each row's cohort medians (same shape).
    Groups whose features the model does not take are skipped; a group without a sentence for this learner's
    values (e.g. no click data) is not named.
    """
    if rows.empty:
        return []
    base = np.asarray(predict(rows) if risk is None else risk, dtype=float)
    contributions: dict[str, np.ndarray] = {}
    usable = [g for g in groups if any(f in rows.columns for f in g.features)]
    for group in usable:
        columns = [f for f in group.features if f in rows.columns]
        typical = rows.copy()
        typical[columns] = reference[columns].to_numpy()
        contributions[group.key] = base - np.asarray(predict(typical), dtype=float)
    by_key = {g.key: g for g in usable}
    explained = []
    records = rows.to_dict("records")
    references = reference.to_dict("records")
    for index, (values, ref) in enumerate(zip(records, references, strict=True)):
        ranked = sorted(((contributions[k][index], k) for k in contributions), reverse=True)
        drivers = []
        for contribution, key in ranked:
            if contribution < min_contribution or len(drivers) >= max_drivers:
                break
            text = by_key[key].text(values, ref)
            if text:
                drivers.append(Driver(key=key, text=text, contribution=float(contribution)))
        explained.append(drivers)
    return explained
