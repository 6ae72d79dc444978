"""Point-in-time feature snapshots computed from OULAD-shaped tables (vectorised numpy/pandas).

Time model (documented in ``pipelines.api`` too):

* A presentation starts on the 1st of February (``B``) or the 1st of October (``J``) of its year, 00:00 UTC.
  OULAD day ``d`` is the calendar day ``start + d``.
* The snapshot "as of day t" uses everything dated day ``t`` or earlier and is stamped at the **end** of day
  ``t`` (``start + t + 1`` days), the first moment all of day ``t`` is known. Label rows use the same stamp.
* Snapshots exist for t = 0, 7, 14, … and the last day of the presentation, and only from the day a student
  registered: a student who registers after ``t`` has no row as of ``t``.
* Marks come back after submission: a CMA (computer marked) on the day it is submitted, a TMA 14 days later
  (``MARK_RETURN_LAG_DAYS``). Exams are left out of every assessment feature: the exam result *is* the final
  result, and several modules have no exam deadline or no exam submissions in the data.
* A presentation's final result counts in a student's history ``RESULT_LAG_DAYS`` (14) after its last day,
  also in the middle of another presentation of theirs; never in a snapshot of its own presentation.
* ``date_unregistration`` counts only once it is ≤ t; banked results (``is_banked``; ``date_submitted=-1``) are
  carried over from an earlier presentation and counted apart, never as a submission or a missed deadline.
* Clicks exist for some presentations only: there every click feature is a real count (0 = no clicks);
  elsewhere every click feature is null and ``has_click_data`` is 0. Never zero for "no data".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

SNAPSHOT_EVERY_DAYS = 7
MARK_RETURN_LAG_DAYS = {"CMA": 0, "TMA": 14}
# A presentation's final result (exam marked, withdrawals settled) is taken as known this long after its last day.
RESULT_LAG_DAYS = 14
CLICK_WINDOWS = (7, 14, 28)
# The activity types that carry ~98% of the clicks; the rest are summed into "other".
CLICK_TYPES = ("forumng", "homepage", "oucontent", "subpage", "quiz", "resource", "url")
EDUCATION_LEVELS = {"No Formal quals": 0, "Lower Than A Level": 1, "A Level or Equivalent": 2,
                    "HE Qualification": 3, "Post Graduate Qualification": 4}
AGE_LEVELS = {"0-35": 0, "35-55": 1, "55<=": 2}
SUBGROUP_COLUMNS = ("gender", "age_band", "disability", "imd_band")


def presentation_start(code_presentation: str) -> datetime:
    """Calendar start of a presentation: ``2013B`` → 2013-02-01, ``2014J`` → 2014-10-01 (UTC)."""
    year, term = int(code_presentation[:4]), code_presentation[4:]
    return datetime(year, 2 if term == "B" else 10, 1, tzinfo=UTC)


def course_key(code_module, code_presentation):
    """Entity key of a module-presentation, e.g. ``AAA-2013J`` (works on scalars and Series)."""
    return code_module + "-" + code_presentation


def student_course_key(id_student, code_module, code_presentation):
    """Entity key of a registration, e.g. ``11391:AAA-2013J`` (works on scalars and Series)."""
    if isinstance(id_student, pd.Series):
        return id_student.astype(str) + ":" + course_key(code_module, code_presentation)
    return f"{id_student}:{course_key(code_module, code_presentation)}"


def day_end_timestamp(starts: pd.Series, days) -> pd.Series:
    """The stamp of "as of day t": end of day t (= start + t + 1 days), tz-aware UTC."""
    starts = pd.to_datetime(starts, utc=True)
    return starts + pd.to_timedelta(np.asarray(days, dtype="int64") + 1, unit="D").to_numpy()


def snapshot_days(length: int) -> np.ndarray:
    """Snapshot days of a presentation of ``length`` days: 0, 7, 14, … and the last day."""
    return np.unique(np.append(np.arange(0, length + 1, SNAPSHOT_EVERY_DAYS), length))


@dataclass
class Snapshots:
    """Every offline source frame, plus the registration table labels are drawn from."""

    registrations: pd.DataFrame
    student_course_profile: pd.DataFrame
    student_course_assessments: pd.DataFrame
    student_course_activity: pd.DataFrame
    course_cohort: pd.DataFrame
    student_history: pd.DataFrame
    content_item_popularity: pd.DataFrame
    student_course_submissions: pd.DataFrame
    module_history: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def build_snapshots(tables, *, created: datetime | None = None,
                    presentations: set[str] | None = None) -> Snapshots:
    """Compute every source frame from OULAD tables (``learnloop.datasets.OuladTables``-shaped).

    ``presentations`` (course keys like ``AAA-2013J``) restricts the build to a slice.
    """
    created_ts = pd.Timestamp(created or datetime.now(UTC))
    regs = all_regs = _registrations(tables)
    if presentations is not None:
        regs = regs[regs["course"].isin(presentations)].reset_index(drop=True)
    clicks = _clicks(tables, regs)
    grid = _grid(regs)
    profile = _profile(regs, grid)
    assessments, course_deadlines = _assessments(tables, regs, grid)
    activity = _activity(regs, grid, clicks)
    cohort = _course_cohort(regs, grid, course_deadlines, activity)
    history = _student_history(regs)
    items = _content_items(tables, regs, clicks)
    submissions = _submissions(tables, regs, grid)
    modules = _module_history(all_regs, cohort)
    frames = {"student_course_profile": profile, "student_course_assessments": assessments,
              "student_course_activity": activity, "course_cohort": cohort, "student_history": history,
              "content_item_popularity": items, "student_course_submissions": submissions,
              "module_history": modules}
    for frame in frames.values():
        frame["created_timestamp"] = created_ts
    return Snapshots(registrations=regs, **frames)


# --------------------------------------------------------------------------- registrations and grid
def _registrations(tables) -> pd.DataFrame:
    key = ["code_module", "code_presentation", "id_student"]
    regs = tables.registrations.merge(tables.student_info, on=key, how="left", validate="one_to_one")
    regs = regs.merge(tables.courses, on=["code_module", "code_presentation"], how="left")
    regs = regs.sort_values(key).reset_index(drop=True)
    click_pairs = set()
    if tables.student_vle is not None:
        click_pairs = set(map(tuple, tables.student_vle[["code_module", "code_presentation"]]
                              .drop_duplicates().to_numpy()))
    out = pd.DataFrame({
        "student_course": student_course_key(regs["id_student"], regs["code_module"], regs["code_presentation"]),
        "id_student": regs["id_student"].astype("int64"),
        "course": course_key(regs["code_module"], regs["code_presentation"]),
        "code_module": regs["code_module"], "code_presentation": regs["code_presentation"],
        "date_registration": regs["date_registration"].astype("Float64").astype("float64"),
        "date_unregistration": regs["date_unregistration"].astype("Float64").astype("float64"),
        "course_length": regs["module_presentation_length"].astype("int64"),
        "has_clicks": [(m, p) in click_pairs for m, p in zip(regs["code_module"], regs["code_presentation"],
                                                                strict=True)],
        "final_result": regs["final_result"],
        "num_of_prev_attempts": regs["num_of_prev_attempts"].astype("float64"),
        "studied_credits": regs["studied_credits"].astype("float64"),
        "highest_education": regs["highest_education"],
    })
    for column in SUBGROUP_COLUMNS:
        out[column] = regs[column].fillna("unknown").astype(str)
    out["course_start"] = pd.to_datetime([presentation_start(p) for p in out["code_presentation"]], utc=True)
    return out


def _grid(regs: pd.DataFrame) -> pd.DataFrame:
    """One row per (registration, snapshot day t) with t ≥ date_registration (unknown date: every t)."""
    days_by_length = {length: snapshot_days(length) for length in regs["course_length"].unique()}
    counts = regs["course_length"].map(lambda length: len(days_by_length[length])).to_numpy()
    reg_idx = np.repeat(np.arange(len(regs)), counts)
    t = np.concatenate([days_by_length[length] for length in regs["course_length"]])
    grid = pd.DataFrame({"reg": reg_idx, "t": t})
    reg_day = regs["date_registration"].to_numpy()[reg_idx]
    grid = grid[~(reg_day > t)].reset_index(drop=True)
    # Position of t in its presentation's snapshot list: lets step functions be binned per registration.
    grid["k"] = grid.groupby("reg").cumcount() + _first_k(regs, days_by_length)[grid["reg"].to_numpy()]
    # .array.take keeps a tz-aware DatetimeArray; .to_numpy() would box millions of Timestamp objects.
    starts = pd.Series(regs["course_start"].array.take(grid["reg"].to_numpy()), index=grid.index)
    grid["event_timestamp"] = day_end_timestamp(starts, grid["t"])
    return grid


def _first_k(regs: pd.DataFrame, days_by_length: dict) -> np.ndarray:
    firsts = []
    for length, reg_day in zip(regs["course_length"], regs["date_registration"], strict=True):
        days = days_by_length[length]
        firsts.append(0 if np.isnan(reg_day) else int(np.searchsorted(days, reg_day, side="left")))
    return np.asarray(firsts, dtype="int64")


def _keys(regs: pd.DataFrame, grid: pd.DataFrame, columns=("student_course", "id_student", "course")) -> pd.DataFrame:
    out = regs.loc[grid["reg"].to_numpy(), list(columns)].reset_index(drop=True)
    out["event_timestamp"] = grid["event_timestamp"].array
    return out


def _step_at(grid: pd.DataFrame, regs: pd.DataFrame, reg: np.ndarray, day: np.ndarray,
             amount: np.ndarray) -> np.ndarray:
    """Σ amount over events (reg, day) with day ≤ t, for every grid row (reg, t). Vectorised."""
    lengths = regs["course_length"].to_numpy()
    max_k = max(len(snapshot_days(length)) for length in np.unique(lengths)) + 1
    table = np.zeros((len(regs), max_k))
    # The first snapshot index whose day is ≥ the event day; events after the last snapshot fall out.
    ks = np.empty(len(day), dtype="int64")
    for length in np.unique(lengths[reg]) if len(reg) else []:
        sel = lengths[reg] == length
        ks[sel] = np.searchsorted(snapshot_days(length), day[sel], side="left")
    np.add.at(table, (reg, np.minimum(ks, max_k - 1)), amount)
    table[:, -1] = 0.0
    table = np.cumsum(table, axis=1)
    return table[grid["reg"].to_numpy(), grid["k"].to_numpy()]


# --------------------------------------------------------------------------- feature groups
def _profile(regs: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    out = _keys(regs, grid, ("student_course",))
    r = grid["reg"].to_numpy()
    t = grid["t"].to_numpy().astype("float64")
    reg_day = regs["date_registration"].to_numpy()[r]
    unreg_day = regs["date_unregistration"].to_numpy()[r]
    out["registration_day"] = reg_day
    out["days_registered"] = t - reg_day
    # date_unregistration is known only once it has happened.
    out["is_unregistered"] = (unreg_day <= t).astype("float64")
    out["num_of_prev_attempts"] = regs["num_of_prev_attempts"].to_numpy()[r]
    out["studied_credits"] = regs["studied_credits"].to_numpy()[r]
    out["education_level"] = regs["highest_education"].map(EDUCATION_LEVELS).astype("float64").to_numpy()[r]
    out["imd_decile"] = _imd_decile(regs["imd_band"]).to_numpy()[r]
    out["age_level"] = regs["age_band"].map(AGE_LEVELS).astype("float64").to_numpy()[r]
    out["has_disability"] = (regs["disability"] == "Y").astype("float64").to_numpy()[r]
    return out


def _imd_decile(imd_band: pd.Series) -> pd.Series:
    # "0-10%" → 0 … "90-100%" → 9 (upstream writes "10-20" without %); unknown stays null.
    lower = pd.to_numeric(imd_band.str.extract(r"^(\d+)-")[0], errors="coerce")
    return (lower / 10.0).astype("float64")


def _course_submissions(tables, regs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Non-exam assessments (with ``deadline`` as float, NaN when none) and the submissions to them of the
    registrations in ``regs``, each tagged with its registration row (``reg``)."""
    reg_index = pd.Series(np.arange(len(regs)), index=pd.MultiIndex.from_frame(
        regs[["id_student", "code_module", "code_presentation"]]))
    course_items = tables.assessments[tables.assessments["assessment_type"] != "Exam"].copy()
    course_items["deadline"] = course_items["date"].astype("Float64").astype("float64")
    subs = tables.student_assessment.merge(course_items, on="id_assessment", how="inner")
    subs = subs[subs.set_index(["id_student", "code_module", "code_presentation"]).index.isin(reg_index.index)]
    subs["reg"] = reg_index.loc[pd.MultiIndex.from_frame(
        subs[["id_student", "code_module", "code_presentation"]])].to_numpy()
    return course_items, subs


def _assessments(tables, regs: pd.DataFrame, grid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    course_items, subs = _course_submissions(tables, regs)
    banked = subs["is_banked"].to_numpy() == 1
    live = subs[~banked]
    reg = live["reg"].to_numpy()
    submitted_day = live["date_submitted"].to_numpy().astype("int64")
    deadline = live["deadline"].to_numpy()
    ones = np.ones(len(live))

    # Deadlines passed (deadline < t) for each registration's presentation.
    due = course_items.dropna(subset=["deadline"])
    due_by_course = due.assign(course=course_key(due["code_module"], due["code_presentation"]))
    due_pairs = regs[["course"]].reset_index().rename(columns={"index": "reg"}).merge(
        due_by_course[["course", "deadline", "id_assessment"]], on="course")
    n_due = _step_at(grid, regs, due_pairs["reg"].to_numpy(), due_pairs["deadline"].to_numpy().astype("int64") + 1,
                     np.ones(len(due_pairs)))
    # A passed deadline stops counting as missed once submitted; banked results are never missed.
    has_deadline = ~np.isnan(deadline)
    settled_day = np.fmax(np.nan_to_num(deadline, nan=0) + 1, submitted_day).astype("int64")
    n_settled = _step_at(grid, regs, reg[has_deadline], settled_day[has_deadline], ones[has_deadline])
    bank = subs[banked]
    due_bank = bank.dropna(subset=["deadline"])
    n_settled += _step_at(grid, regs, due_bank["reg"].to_numpy(),
                          due_bank["deadline"].to_numpy().astype("int64") + 1, np.ones(len(due_bank)))

    late = (submitted_day > deadline)
    scored = ~np.isnan(live["score"].to_numpy())
    lag = live["assessment_type"].map(MARK_RETURN_LAG_DAYS).to_numpy().astype("int64")
    returned_day = submitted_day + lag
    score = np.nan_to_num(live["score"].to_numpy())
    weight = live["weight"].to_numpy()

    out = _keys(regs, grid, ("student_course",))
    out["n_submitted"] = _step_at(grid, regs, reg, submitted_day, ones)
    out["n_due"] = n_due
    out["n_missed"] = n_due - n_settled
    out["n_late"] = _step_at(grid, regs, reg[late], submitted_day[late], ones[late])
    out["n_banked"] = np.bincount(bank["reg"].to_numpy(), minlength=len(regs))[grid["reg"].to_numpy()].astype(float)
    n_scores = _step_at(grid, regs, reg[scored], returned_day[scored], ones[scored])
    score_sum = _step_at(grid, regs, reg[scored], returned_day[scored], score[scored])
    weighted_sum = _step_at(grid, regs, reg[scored], returned_day[scored], (score * weight)[scored])
    weight_sum = _step_at(grid, regs, reg[scored], returned_day[scored], weight[scored])
    failed = scored & (score < 40)
    out["n_scores_returned"] = n_scores
    out["n_failed_scores"] = _step_at(grid, regs, reg[failed], returned_day[failed], ones[failed])
    with np.errstate(invalid="ignore", divide="ignore"):
        out["score_mean"] = np.where(n_scores > 0, score_sum / n_scores, np.nan)
        out["score_weighted_mean"] = np.where(weight_sum > 0, weighted_sum / weight_sum, np.nan)
    out["weighted_points"] = weighted_sum / 100.0
    return out, due_by_course[["course", "deadline"]]


def _submissions(tables, regs: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Submission behaviour as of t (known the day it happens, unlike marks): weight due vs submitted, on time,
    ahead of a deadline still to come, days early, days since the last submission; marks per type after their
    return lag (CMA same day, TMA 14 days); position in the still-registered cohort of the same day."""
    course_items, subs = _course_submissions(tables, regs)
    banked = subs["is_banked"].to_numpy() == 1
    live, bank = subs[~banked], subs[banked].dropna(subset=["deadline"])
    reg = live["reg"].to_numpy()
    s = live["date_submitted"].to_numpy().astype("int64")
    d = live["deadline"].to_numpy()
    weight = live["weight"].to_numpy().astype("float64")
    ones = np.ones(len(live))
    has_d = ~np.isnan(d)
    dd = np.nan_to_num(d, nan=0.0).astype("int64")

    due = course_items.dropna(subset=["deadline"])
    due = due.assign(course=course_key(due["code_module"], due["code_presentation"]))
    pairs = regs[["course"]].reset_index().rename(columns={"index": "reg"}).merge(
        due[["course", "deadline", "weight"]], on="course")
    pair_day = pairs["deadline"].to_numpy().astype("int64") + 1
    n_due = _step_at(grid, regs, pairs["reg"].to_numpy(), pair_day, np.ones(len(pairs)))
    due_weight = _step_at(grid, regs, pairs["reg"].to_numpy(), pair_day, pairs["weight"].to_numpy().astype(float))
    n_sub = _step_at(grid, regs, reg, s, ones)
    n_sub_dl = _step_at(grid, regs, reg[has_d], s[has_d], ones[has_d])
    # Submitted and past its deadline: counted from max(submission, deadline + 1).
    n_sub_due = _step_at(grid, regs, reg[has_d], np.maximum(s, dd + 1)[has_d], ones[has_d])
    n_bank_due = _step_at(grid, regs, bank["reg"].to_numpy(), bank["deadline"].to_numpy().astype("int64") + 1,
                          np.ones(len(bank)))
    on_time = has_d & (s <= dd)
    early_sum = _step_at(grid, regs, reg[has_d], s[has_d], (dd - s)[has_d].astype(float))

    out = _keys(regs, grid, ("student_course",))
    t = grid["t"].to_numpy()
    out["due_weight"] = due_weight
    out["submitted_weight"] = _step_at(grid, regs, reg, s, weight)
    out["n_on_time"] = _step_at(grid, regs, reg[on_time], s[on_time], ones[on_time])
    out["n_ahead"] = n_sub_dl - n_sub_due
    with np.errstate(invalid="ignore", divide="ignore"):
        out["submitted_share"] = np.where(n_due > 0, (n_sub_due + n_bank_due) / n_due, np.nan)
        out["days_early_mean"] = np.where(n_sub_dl > 0, early_sum / n_sub_dl, np.nan)
    out["days_since_last_submission"] = t - _last_event_day(grid, reg, s)

    scored = ~np.isnan(live["score"].to_numpy())
    score = np.nan_to_num(live["score"].to_numpy())
    kinds = live["assessment_type"].to_numpy()
    score_sum, score_n = np.zeros(len(grid)), np.zeros(len(grid))
    for kind in ("CMA", "TMA"):
        sel = scored & (kinds == kind)
        returned = s[sel] + MARK_RETURN_LAG_DAYS[kind]
        kind_sum = _step_at(grid, regs, reg[sel], returned, score[sel])
        kind_n = _step_at(grid, regs, reg[sel], returned, ones[sel])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{kind.lower()}_score_mean"] = np.where(kind_n > 0, kind_sum / kind_n, np.nan)
        score_sum += kind_sum
        score_n += kind_n
    with np.errstate(invalid="ignore", divide="ignore"):
        score_mean = np.where(score_n > 0, score_sum / score_n, np.nan)
    r = grid["reg"].to_numpy()
    still = ~(regs["date_unregistration"].to_numpy()[r] <= t)
    cohort = pd.DataFrame({"course": regs["course"].to_numpy()[r], "t": t,
                           "score": np.where(still, score_mean, np.nan), "sub": np.where(still, n_sub, np.nan)})
    means = cohort.groupby(["course", "t"])[["score", "sub"]].transform("mean")
    out["score_vs_cohort"] = score_mean - means["score"].to_numpy()
    out["submitted_vs_cohort"] = n_sub - means["sub"].to_numpy()
    return out


def _last_event_day(grid: pd.DataFrame, reg: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Per grid row (reg, t): the latest event day ≤ t of that registration (NaN when none)."""
    if not len(reg):
        return np.full(len(grid), np.nan)
    offset, span = 10_000, 100_000  # days lie well within (-offset, span - offset)
    keys = np.sort(reg.astype("int64") * span + (day.astype("int64") + offset))
    g_reg = grid["reg"].to_numpy().astype("int64")
    pos = np.searchsorted(keys, g_reg * span + grid["t"].to_numpy().astype("int64") + offset, side="right") - 1
    found = (pos >= 0) & (keys[np.maximum(pos, 0)] // span == g_reg)
    return np.where(found, keys[np.maximum(pos, 0)] % span - offset, np.nan).astype("float64")


def _module_history(all_regs: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """Per module-presentation and snapshot: outcomes of the same module's presentations whose results were
    known by then (``RESULT_LAG_DAYS`` after they ended; a course-level base rate: a presentation still running
    contributes nothing). ``module_prior_active_fail_rate`` counts only the students still registered on the same course
    day there — the base rate of the students an instructor can still help."""
    courses = all_regs.drop_duplicates("course").set_index("course")
    ends = courses["course_start"] + pd.to_timedelta(courses["course_length"] + 1 + RESULT_LAG_DAYS, unit="D")
    bad = all_regs["final_result"].isin(["Withdrawn", "Fail"]).to_numpy()
    by_course = {course: idx.to_numpy() for course, idx in all_regs.groupby("course").groups.items()}
    reg_day = all_regs["date_registration"].to_numpy()
    unreg_day = all_regs["date_unregistration"].to_numpy()
    out = cohort[["course", "event_timestamp", "course_day"]].copy()
    n_prior = np.zeros(len(out))
    rate = np.full(len(out), np.nan)
    active_rate = np.full(len(out), np.nan)
    for i, (course, stamp, day) in enumerate(zip(out["course"], out["event_timestamp"], out["course_day"],
                                                 strict=True)):
        module = courses.at[course, "code_module"]
        prior = [c for c in by_course if c != course and courses.at[c, "code_module"] == module and ends[c] <= stamp]
        if not prior:
            continue
        rows = np.concatenate([by_course[c] for c in prior])
        n_prior[i] = len(prior)
        rate[i] = bad[rows].mean()
        there = rows[~(reg_day[rows] > day) & ~(unreg_day[rows] <= day)]
        if len(there):
            active_rate[i] = bad[there].mean()
    out["module_prior_presentations"] = n_prior
    out["module_prior_fail_rate"] = rate
    out["module_prior_active_fail_rate"] = active_rate
    return out.drop(columns=["course_day"])


def _clicks(tables, regs: pd.DataFrame) -> pd.DataFrame:
    """Daily clicks per (registration, day, activity type index) for the registrations in ``regs``."""
    if tables.student_vle is None or not regs["has_clicks"].any():
        return pd.DataFrame({"reg": [], "id_site": [], "date": [], "sum_click": [], "type": []})
    reg_index = pd.Series(np.arange(len(regs)), index=pd.MultiIndex.from_frame(
        regs[["id_student", "code_module", "code_presentation"]]))
    vle = tables.student_vle
    keys = pd.MultiIndex.from_frame(vle[["id_student", "code_module", "code_presentation"]])
    known = keys.isin(reg_index.index)
    vle = vle[known]
    types = tables.vle.set_index("id_site")["activity_type"]
    type_codes = {name: i for i, name in enumerate(CLICK_TYPES)}
    out = pd.DataFrame({
        "reg": reg_index.loc[keys[known]].to_numpy(),
        "id_site": vle["id_site"].to_numpy(),
        "date": vle["date"].to_numpy().astype("int64"),
        "sum_click": vle["sum_click"].to_numpy().astype("float64"),
    })
    activity = types.reindex(out["id_site"]).to_numpy()
    out["type"] = pd.Series(activity).map(type_codes).fillna(len(CLICK_TYPES)).astype("int64").to_numpy()
    return out


def _activity(regs: pd.DataFrame, grid: pd.DataFrame, clicks: pd.DataFrame) -> pd.DataFrame:
    out = _keys(regs, grid, ("student_course",))
    has = regs["has_clicks"].to_numpy()[grid["reg"].to_numpy()]
    out["has_click_data"] = has.astype("float64")
    type_names = ["total", *CLICK_TYPES, "other"]
    columns = {f"clicks_{name}_{w}d": np.full(len(grid), np.nan) for name in type_names for w in CLICK_WINDOWS}
    columns.update({f"clicks_{name}_cum": np.full(len(grid), np.nan) for name in type_names})
    for name in ("days_since_last_activity", "active_days_7d", "active_days_28d", "current_streak",
                 "longest_streak", "clicks_28d_cohort_z", "clicks_cum_cohort_z"):
        columns[name] = np.full(len(grid), np.nan)
    for _, course_regs in regs[regs["has_clicks"]].groupby("course", sort=False):
        reg_ids = course_regs.index.to_numpy()
        rows = np.flatnonzero(np.isin(grid["reg"].to_numpy(), reg_ids))
        course_clicks = clicks[np.isin(clicks["reg"].to_numpy(), reg_ids)]
        _course_activity(course_regs, grid.iloc[rows], course_clicks, rows, columns)
    for name, values in columns.items():
        out[name] = values
    return out


def _course_activity(course_regs: pd.DataFrame, grid: pd.DataFrame, clicks: pd.DataFrame,
                     rows: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    length = int(course_regs["course_length"].iloc[0])
    first_day = int(min(clicks["date"].min() if len(clicks) else 0, 0))
    n_days = length - first_day + 1
    local = pd.Series(np.arange(len(course_regs)), index=course_regs.index)
    n_types = len(CLICK_TYPES) + 1
    daily = np.zeros((len(course_regs), n_days, n_types + 1))  # last channel: total
    in_range = clicks["date"].to_numpy() <= length
    c = clicks[in_range]
    li = local.loc[c["reg"].to_numpy()].to_numpy()
    di = c["date"].to_numpy() - first_day
    np.add.at(daily, (li, di, c["type"].to_numpy()), c["sum_click"].to_numpy())
    daily[:, :, n_types] = daily[:, :, :n_types].sum(axis=2)
    cum = np.concatenate([np.zeros((len(course_regs), 1, n_types + 1)), np.cumsum(daily, axis=1)], axis=1)
    # cum[:, j] = clicks on days < first_day + j; "as of t" means index t - first_day + 1.
    g_local = local.loc[grid["reg"].to_numpy()].to_numpy()
    t_idx = grid["t"].to_numpy() - first_day + 1
    channel_names = [*CLICK_TYPES, "other", "total"]
    for ch, name in enumerate(channel_names):
        now = cum[g_local, t_idx, ch]
        columns[f"clicks_{name}_cum"][rows] = now
        for w in CLICK_WINDOWS:
            columns[f"clicks_{name}_{w}d"][rows] = now - cum[g_local, np.maximum(t_idx - w, 0), ch]
    active = daily[:, :, n_types] > 0
    active_cum = np.concatenate([np.zeros((len(course_regs), 1)), np.cumsum(active, axis=1)], axis=1)
    columns["active_days_7d"][rows] = active_cum[g_local, t_idx] - active_cum[g_local, np.maximum(t_idx - 7, 0)]
    columns["active_days_28d"][rows] = active_cum[g_local, t_idx] - active_cum[g_local, np.maximum(t_idx - 28, 0)]
    day_numbers = np.arange(n_days) + first_day
    last_active = np.maximum.accumulate(np.where(active, day_numbers[None, :], -100_000), axis=1)
    run = np.zeros(active.shape)
    run[:, 0] = active[:, 0]
    for d in range(1, n_days):  # a ~300-step loop over days, vectorised over students
        run[:, d] = np.where(active[:, d], run[:, d - 1] + 1, 0)
    longest = np.maximum.accumulate(run, axis=1)
    t = grid["t"].to_numpy()
    d_idx = t - first_day
    last = last_active[g_local, d_idx]
    reg_day = course_regs["date_registration"].to_numpy()[g_local]
    # Never active: count from registration (or the first day of data) so the value still grows with t.
    since_start = t - np.where(np.isnan(reg_day), first_day, np.maximum(reg_day, first_day))
    columns["days_since_last_activity"][rows] = np.where(last > -100_000, t - last, since_start)
    # A streak still counts when the student was active yesterday but not (yet) today.
    today, yesterday = run[g_local, d_idx], run[g_local, np.maximum(d_idx - 1, 0)]
    columns["current_streak"][rows] = np.where(today > 0, today, yesterday)
    columns["longest_streak"][rows] = longest[g_local, d_idx]
    unreg = course_regs["date_unregistration"].to_numpy()[g_local]
    still_registered = ~(unreg <= t)
    for value_name, z_name in (("clicks_total_28d", "clicks_28d_cohort_z"), ("clicks_total_cum", "clicks_cum_cohort_z")):
        values = columns[value_name][rows]
        frame = pd.DataFrame({"t": t, "v": np.where(still_registered, values, np.nan)})
        stats = frame.groupby("t")["v"].agg(["mean", "std"])
        mean = stats["mean"].reindex(t).to_numpy()
        std = stats["std"].reindex(t).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[z_name][rows] = np.where(std > 0, (values - mean) / std, 0.0)


def _course_cohort(regs: pd.DataFrame, grid: pd.DataFrame, deadlines: pd.DataFrame,
                   activity: pd.DataFrame) -> pd.DataFrame:
    g = pd.DataFrame({"course": regs["course"].to_numpy()[grid["reg"]], "t": grid["t"].to_numpy(),
                      "event_timestamp": grid["event_timestamp"].array,
                      "unregistered": (regs["date_unregistration"].to_numpy()[grid["reg"]] <= grid["t"].to_numpy()),
                      "clicks_28d": activity["clicks_total_28d"].to_numpy()})
    out = g.groupby(["course", "t"], sort=True).agg(
        event_timestamp=("event_timestamp", "first"), n_registered=("unregistered", "size"),
        n_unregistered=("unregistered", "sum"), cohort_clicks_28d_mean=("clicks_28d", "mean")).reset_index()
    out["unregistered_share"] = out["n_unregistered"] / out["n_registered"]
    lengths = regs.drop_duplicates("course").set_index("course")["course_length"]
    out["course_length"] = out["course"].map(lengths).astype("float64")
    out["course_day"] = out["t"].astype("float64")
    out["course_progress"] = out["course_day"] / out["course_length"]
    has = regs.drop_duplicates("course").set_index("course")["has_clicks"]
    out["course_has_click_data"] = out["course"].map(has).astype("float64")
    # Days to the next non-exam deadline after t (null when none is left): a cohort-wide fact known in advance.
    nxt = out[["course", "t"]].merge(deadlines, on="course", how="left")
    nxt = nxt[nxt["deadline"] > nxt["t"]].groupby(["course", "t"])["deadline"].min().rename("next_deadline")
    out = out.merge(nxt.reset_index(), on=["course", "t"], how="left")
    out["days_to_next_deadline"] = out["next_deadline"].astype("float64") - out["t"]
    out = out.drop(columns=["next_deadline"])
    out["n_registered"] = out["n_registered"].astype("float64")
    return out.drop(columns=["t", "n_unregistered"])


def _student_history(regs: pd.DataFrame) -> pd.DataFrame:
    """Per student, outcomes of their presentations whose result is known, restated at the start of each of
    their presentations and again whenever another result becomes known (``RESULT_LAG_DAYS`` after a
    presentation ends), so a snapshot in the middle of a presentation sees results that came in since it began
    (2014B ends the day before 2014J starts: its result is known from 2014J's third week on)."""
    starts = regs["course_start"] + pd.to_timedelta(np.fmin(regs["date_registration"].fillna(0), 0), unit="D")
    known = regs["course_start"] + pd.to_timedelta(regs["course_length"] + 1 + RESULT_LAG_DAYS, unit="D")
    own = pd.concat([pd.DataFrame({"id_student": regs["id_student"], "event_timestamp": starts}),
                     pd.DataFrame({"id_student": regs["id_student"], "event_timestamp": known})]).drop_duplicates()
    past = pd.DataFrame({"id_student": regs["id_student"], "known": known,
                         "passed": regs["final_result"].isin(["Pass", "Distinction"]).astype(float),
                         "failed": regs["final_result"].isin(["Fail", "Withdrawn"]).astype(float)})
    pairs = own.merge(past, on="id_student")
    pairs = pairs[pairs["known"] <= pairs["event_timestamp"]]
    counts = pairs.groupby(["id_student", "event_timestamp"]).agg(
        prior_presentations=("known", "size"), prior_passes=("passed", "sum"),
        prior_fail_or_withdrawn=("failed", "sum"))
    out = own.merge(counts.reset_index(), on=["id_student", "event_timestamp"], how="left")
    out[["prior_presentations", "prior_passes", "prior_fail_or_withdrawn"]] = out[
        ["prior_presentations", "prior_passes", "prior_fail_or_withdrawn"]].fillna(0.0).astype("float64")
    return out.sort_values(["id_student", "event_timestamp"]).reset_index(drop=True)


def _cumulative_days(daily: np.ndarray) -> np.ndarray:
    """Column j = total over days < j (a leading zero column, then the running sum)."""
    return np.concatenate([np.zeros((daily.shape[0], 1)), np.cumsum(daily, axis=1)], axis=1)


def _content_items(tables, regs: pd.DataFrame, clicks: pd.DataFrame) -> pd.DataFrame:
    """Per VLE item of a presentation with clicks, as of each snapshot day: how much it is used."""
    columns = ["id_site", "event_timestamp", "item_clicks_7d", "item_clicks_28d", "item_clicks_cum",
               "item_student_days_7d", "item_student_days_28d", "item_students_cum"]
    if not len(clicks):
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    c = clicks.assign(course=regs["course"].to_numpy()[clicks["reg"].to_numpy()])
    parts = []
    for course, cc in c.groupby("course", sort=False):
        first = regs[regs["course"] == course].iloc[0]
        length = int(first["course_length"])
        days = snapshot_days(length)
        sites = np.unique(cc["id_site"].to_numpy())
        site_idx = np.searchsorted(sites, cc["id_site"].to_numpy())
        first_day = int(min(cc["date"].min(), 0))
        n_days = length - first_day + 1
        keep = cc["date"].to_numpy() <= length
        d = cc["date"].to_numpy()[keep] - first_day
        s = site_idx[keep]
        daily = np.zeros((len(sites), n_days))
        np.add.at(daily, (s, d), cc["sum_click"].to_numpy()[keep])
        # Rows are per (student, site, day) already, so each row is one student-day on the item.
        student_days = np.zeros((len(sites), n_days))
        np.add.at(student_days, (s, d), 1.0)
        firsts = cc[keep].groupby(["id_site", "reg"])["date"].min().reset_index()
        newcomers = np.zeros((len(sites), n_days))
        np.add.at(newcomers, (np.searchsorted(sites, firsts["id_site"].to_numpy()),
                              firsts["date"].to_numpy() - first_day), 1.0)
        cd, cs, cn = (_cumulative_days(a) for a in (daily, student_days, newcomers))
        t_idx = days - first_day + 1
        rows = {
            "id_site": np.repeat(sites, len(days)),
            "t": np.tile(days, len(sites)),
        }
        ti = np.tile(t_idx, len(sites))
        si = np.repeat(np.arange(len(sites)), len(days))
        rows["item_clicks_cum"] = cd[si, ti]
        rows["item_clicks_7d"] = cd[si, ti] - cd[si, np.maximum(ti - 7, 0)]
        rows["item_clicks_28d"] = cd[si, ti] - cd[si, np.maximum(ti - 28, 0)]
        rows["item_student_days_7d"] = cs[si, ti] - cs[si, np.maximum(ti - 7, 0)]
        rows["item_student_days_28d"] = cs[si, ti] - cs[si, np.maximum(ti - 28, 0)]
        rows["item_students_cum"] = cn[si, ti]
        frame = pd.DataFrame(rows)
        frame["event_timestamp"] = day_end_timestamp(pd.Series([first["course_start"]] * len(frame)), frame["t"])
        parts.append(frame.drop(columns=["t"]))
    out = pd.concat(parts, ignore_index=True)
    out["id_site"] = out["id_site"].astype("int64")
    return out[columns]
