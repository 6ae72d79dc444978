"""Point-in-time semantics: nothing dated after the cutoff reaches a row, and each OULAD leakage trap."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from feature_fixtures import synthetic_oulad

from pipelines._snapshots import (
    RESULT_LAG_DAYS,
    _student_history,
    build_snapshots,
    day_end_timestamp,
    presentation_start,
)

CUTOFF = 35


def _rows_at(frame: pd.DataFrame, key: str, regs: pd.DataFrame, day: int) -> pd.DataFrame:
    """Rows of a student_course source stamped "as of ``day``" for each registration."""
    stamps = regs.set_index("student_course")["course_start"]
    wanted = day_end_timestamp(stamps, np.full(len(stamps), day))
    target = pd.DataFrame({key: stamps.index, "event_timestamp": wanted.to_numpy()})
    return frame.merge(target, on=[key, "event_timestamp"]).set_index(key).sort_index()


def _truncate(tables, day: int):
    """The tables as they stood at the end of ``day`` of every presentation (what was knowable then)."""
    subs = tables.student_assessment
    vle = tables.student_vle
    regs = tables.registrations.copy()
    regs.loc[(regs["date_unregistration"] > day).fillna(False), "date_unregistration"] = pd.NA
    regs = regs[~(regs["date_registration"] > day).fillna(False)]
    info = tables.student_info.merge(regs[["code_module", "code_presentation", "id_student"]])
    info["final_result"] = "Pass"  # the outcome is not known at the cutoff
    return dataclasses.replace(
        tables, registrations=regs, student_info=info,
        student_assessment=subs[subs["date_submitted"] <= day],
        student_vle=vle[vle["date"] <= day],
    )


def test_features_as_of_t_equal_features_computed_from_data_truncated_at_t() -> None:
    # The strongest leak check: every student_course/course feature at day t is identical whether the
    # builder saw the whole presentation or only what existed at the end of day t.
    tables = synthetic_oulad(n_students=24, seed=11)
    full = build_snapshots(tables)
    cut = build_snapshots(_truncate(tables, CUTOFF))
    compared = 0
    for view in ("student_course_profile", "student_course_assessments", "student_course_activity",
                 "student_course_submissions"):
        a = _rows_at(getattr(full, view), "student_course", full.registrations, CUTOFF)
        b = _rows_at(getattr(cut, view), "student_course", cut.registrations, CUTOFF)
        assert list(a.index) == list(b.index) and len(a) > 50
        pd.testing.assert_frame_equal(a.drop(columns=["created_timestamp"]), b.drop(columns=["created_timestamp"]))
        compared += a.shape[1]
    cohort_full = full.course_cohort[full.course_cohort["course_day"] == CUTOFF].set_index("course")
    cohort_cut = cut.course_cohort[cut.course_cohort["course_day"] == CUTOFF].set_index("course")
    pd.testing.assert_frame_equal(cohort_full.drop(columns=["created_timestamp"]),
                                  cohort_cut.drop(columns=["created_timestamp"]))
    assert compared > 60


def test_truncation_check_catches_a_leak() -> None:
    # Guard for the test above: a feature that reads the future must make the comparison fail.
    tables = synthetic_oulad(n_students=24, seed=11)
    full = build_snapshots(tables)
    cut = build_snapshots(_truncate(tables, CUTOFF))
    a = _rows_at(full.student_course_activity, "student_course", full.registrations, CUTOFF)
    b = _rows_at(cut.student_course_activity, "student_course", cut.registrations, CUTOFF)
    final_clicks = _rows_at(full.student_course_activity, "student_course", full.registrations, 200)
    a = a.assign(clicks_total_cum=final_clicks["clicks_total_cum"].reindex(a.index))
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(a.drop(columns=["created_timestamp"]), b.drop(columns=["created_timestamp"]))


def _one_presentation(**changes) -> object:
    """A tiny single-registration table set to probe one trap at a time."""
    tables = synthetic_oulad(n_students=10, seed=5)
    keep = ("AAA", "2013J")
    courses = tables.courses[(tables.courses["code_module"] == keep[0]) &
                             (tables.courses["code_presentation"] == keep[1])]
    mask = lambda f: (f["code_module"] == keep[0]) & (f["code_presentation"] == keep[1])  # noqa: E731
    base = dataclasses.replace(tables, courses=courses, assessments=tables.assessments[mask(tables.assessments)],
                               vle=tables.vle[mask(tables.vle)],
                               student_info=tables.student_info[mask(tables.student_info)],
                               registrations=tables.registrations[mask(tables.registrations)],
                               student_vle=tables.student_vle[mask(tables.student_vle)])
    return dataclasses.replace(base, **changes)


def _student_rows(snaps, view: str, student: int) -> pd.DataFrame:
    frame = getattr(snaps, view)
    rows = frame[frame["student_course"] == f"{student}:AAA-2013J"].copy()
    start = presentation_start("2013J")
    rows["t"] = ((rows["event_timestamp"] - pd.Timestamp(start)).dt.days - 1).astype(int)
    return rows.set_index("t")


def test_unregistration_counts_only_once_it_happened() -> None:
    tables = _one_presentation()
    regs = tables.registrations.copy()
    student = int(regs["id_student"].iloc[2])
    regs.loc[regs["id_student"] == student, ["date_registration", "date_unregistration"]] = [-30, 50]
    snaps = build_snapshots(dataclasses.replace(tables, registrations=regs))
    profile = _student_rows(snaps, "student_course_profile", student)
    assert profile.loc[49, "is_unregistered"] == 0.0
    assert profile.loc[56, "is_unregistered"] == 1.0
    assert (profile.loc[:49, "is_unregistered"] == 0).all()


def test_exams_without_deadline_or_submission_are_never_missed() -> None:
    tables = _one_presentation()
    student = int(tables.registrations["id_student"].iloc[3])
    regs = tables.registrations.copy()
    regs.loc[regs["id_student"] == student, ["date_registration", "date_unregistration"]] = [-30, pd.NA]
    # The student submits nothing at all; AAA's exam has no deadline, a second exam has one but no submissions.
    extra_exam = pd.DataFrame([("AAA", "2013J", 9999, "Exam", 200, 100.0)], columns=tables.assessments.columns)
    extra_exam["date"] = extra_exam["date"].astype("Int64")
    assessments = pd.concat([tables.assessments, extra_exam], ignore_index=True)
    subs = tables.student_assessment[tables.student_assessment["id_student"] != student]
    snaps = build_snapshots(dataclasses.replace(tables, registrations=regs, assessments=assessments,
                                                student_assessment=subs))
    rows = _student_rows(snaps, "student_course_assessments", student)
    end = rows.index.max()
    non_exam_due = tables.assessments[(tables.assessments["assessment_type"] != "Exam")]["date"].notna().sum()
    assert rows.loc[end, "n_missed"] == non_exam_due == rows.loc[end, "n_due"]
    assert rows.loc[21, "n_missed"] == 1  # TMA due day 19 missed by day 21


def test_banked_results_are_neither_submissions_nor_missed() -> None:
    tables = _one_presentation()
    student = int(tables.registrations["id_student"].iloc[4])
    regs = tables.registrations.copy()
    regs.loc[regs["id_student"] == student, ["date_registration", "date_unregistration"]] = [-30, pd.NA]
    first_tma = int(tables.assessments[(tables.assessments["assessment_type"] == "TMA")]["id_assessment"].iloc[0])
    subs = tables.student_assessment[tables.student_assessment["id_student"] != student]
    banked = pd.DataFrame([(first_tma, student, -1, 1, 80.0)], columns=subs.columns)
    snaps = build_snapshots(dataclasses.replace(tables, registrations=regs,
                                                student_assessment=pd.concat([subs, banked])))
    rows = _student_rows(snaps, "student_course_assessments", student)
    assert rows.loc[0, "n_banked"] == 1
    assert rows.loc[28, "n_submitted"] == 0
    assert rows.loc[28, "n_missed"] == 0  # the banked TMA (due day 19) is not missed
    assert np.isnan(rows.loc[28, "score_mean"])


def test_students_who_register_after_t_have_no_row_until_they_register() -> None:
    tables = _one_presentation()
    student = int(tables.registrations["id_student"].iloc[5])
    regs = tables.registrations.copy()
    regs.loc[regs["id_student"] == student, ["date_registration", "date_unregistration"]] = [40, pd.NA]
    snaps = build_snapshots(dataclasses.replace(tables, registrations=regs))
    days = set(_student_rows(snaps, "student_course_profile", student).index)
    assert min(days) == 42 and 35 not in days
    from pipelines._offline import write_sources
    from pipelines.api import risk_label_frame

    return_frame = _labels_for(snaps, write_sources, risk_label_frame)
    keys = set(return_frame[return_frame["week"] == "5"]["student_course"])
    assert f"{student}:AAA-2013J" not in keys
    assert f"{student}:AAA-2013J" in set(return_frame[return_frame["week"] == "10"]["student_course"])


def _labels_for(snaps, write_sources, risk_label_frame) -> pd.DataFrame:
    import tempfile
    from pathlib import Path

    from learnloop.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder))
        write_sources(snaps.frames(), snaps.registrations, settings)
        return risk_label_frame(weeks=(5, 10), feast_dir=settings.feast_dir)


def test_marks_count_only_after_the_return_lag() -> None:
    tables = _one_presentation()
    student = int(tables.registrations["id_student"].iloc[6])
    regs = tables.registrations.copy()
    regs.loc[regs["id_student"] == student, ["date_registration", "date_unregistration"]] = [-30, pd.NA]
    items = tables.assessments.set_index(["assessment_type", "date"])["id_assessment"]
    tma19, cma33 = int(items.loc[("TMA", 19)]), int(items.loc[("CMA", 33)])
    subs = tables.student_assessment[tables.student_assessment["id_student"] != student]
    mine = pd.DataFrame([(tma19, student, 18, 0, 50.0), (cma33, student, 30, 0, 90.0)], columns=subs.columns)
    snaps = build_snapshots(dataclasses.replace(tables, registrations=regs, student_assessment=pd.concat([subs, mine])))
    rows = _student_rows(snaps, "student_course_assessments", student)
    # TMA submitted day 18 returns day 32 (14-day lag): unknown at day 28, known at 35 with the CMA (no lag).
    assert rows.loc[21, "n_submitted"] == 1 and np.isnan(rows.loc[21, "score_mean"])
    assert rows.loc[28, "n_scores_returned"] == 0
    assert rows.loc[35, "n_scores_returned"] == 2 and rows.loc[35, "score_mean"] == pytest.approx(70.0)


def test_absent_click_data_is_null_but_no_clicks_is_zero() -> None:
    tables = synthetic_oulad(n_students=20, seed=2)
    snaps = build_snapshots(tables)
    activity = snaps.student_course_activity.merge(snaps.registrations[["student_course", "has_clicks", "course"]])
    without = activity[~activity["has_clicks"]]
    assert len(without) and without["clicks_total_cum"].isna().all() and (without["has_click_data"] == 0).all()
    with_data = activity[activity["has_clicks"]]
    assert with_data["clicks_total_cum"].notna().all() and (with_data["has_click_data"] == 1).all()
    clicked = set(tables.student_vle["id_student"].astype(str) + ":" + tables.student_vle["code_module"] + "-"
                  + tables.student_vle["code_presentation"])
    never = with_data[~with_data["student_course"].isin(clicked)]
    assert len(never) and (never["clicks_total_cum"] == 0).all()


def test_submission_timing_is_known_when_it_happens_and_marks_wait_for_their_lag() -> None:
    # student_risk_v2: the fact and timing of a submission count the day it happens; its mark only after the lag.
    tables = _one_presentation()
    student = int(tables.registrations["id_student"].iloc[6])
    regs = tables.registrations.copy()
    regs.loc[regs["id_student"] == student, ["date_registration", "date_unregistration"]] = [-30, pd.NA]
    items = tables.assessments.set_index(["assessment_type", "date"])["id_assessment"]
    tma19, tma54, cma33 = (int(items.loc[k]) for k in (("TMA", 19), ("TMA", 54), ("CMA", 33)))
    subs = tables.student_assessment[tables.student_assessment["id_student"] != student]
    mine = pd.DataFrame([(tma19, student, 21, 0, 50.0), (tma54, student, 12, 0, 80.0), (cma33, student, 30, 0, 90.0)],
                        columns=subs.columns)
    snaps = build_snapshots(dataclasses.replace(tables, registrations=regs, student_assessment=pd.concat([subs, mine])))
    rows = _student_rows(snaps, "student_course_submissions", student)
    # Day 14: TMA 54 handed in on day 12, 42 days ahead of its deadline; nothing due yet, no mark back.
    assert rows.loc[14, "n_ahead"] == 1 and rows.loc[14, "days_early_mean"] == 42
    assert np.isnan(rows.loc[14, "submitted_share"]) and np.isnan(rows.loc[14, "tma_score_mean"])
    assert rows.loc[14, "days_since_last_submission"] == 2
    # Day 21: TMA 19 handed in late that day: not on time, share of due work submitted 1/1.
    assert rows.loc[21, "n_on_time"] == 1 and rows.loc[21, "submitted_share"] == 1.0
    assert rows.loc[21, "days_since_last_submission"] == 0
    assert rows.loc[21, "submitted_weight"] == 50.0 and rows.loc[21, "due_weight"] == 25.0
    # Day 28: TMA 54's mark (submitted day 12) is back (12 + 14 ≤ 28); TMA 19's (21 + 14 = 35) is not.
    assert rows.loc[28, "tma_score_mean"] == 80.0 and np.isnan(rows.loc[28, "cma_score_mean"])
    # Day 35: the CMA is marked the day it is submitted; both TMAs are back.
    assert rows.loc[35, "cma_score_mean"] == 90.0 and rows.loc[35, "tma_score_mean"] == pytest.approx(65.0)
    assert rows.loc[35, "submitted_share"] == 1.0  # TMA 19 and CMA 33 due, both submitted


def test_module_base_rates_use_only_presentations_that_had_ended() -> None:
    # module_history reads final results, so it may only use the same module's presentations already over.
    tables = synthetic_oulad(n_students=20, seed=4)
    snaps = build_snapshots(tables)
    courses = snaps.registrations.drop_duplicates("course").set_index("course")
    ends = courses["course_start"] + pd.to_timedelta(courses["course_length"] + 1 + RESULT_LAG_DAYS, unit="D")
    history = snaps.module_history.merge(courses[["code_module"]], left_on="course", right_index=True)
    checked = 0
    for other in courses.index:
        flipped_info = tables.student_info.copy()
        module, presentation = other.split("-")
        mask = (flipped_info["code_module"] == module) & (flipped_info["code_presentation"] == presentation)
        flipped_info.loc[mask, "final_result"] = "Withdrawn"
        flipped = build_snapshots(dataclasses.replace(tables, student_info=flipped_info)).module_history
        same = history.merge(flipped, on=["course", "event_timestamp"], suffixes=("", "_flipped"))
        same = same[(same["code_module"] == module) & (same["course"] != other)]
        before = same["event_timestamp"] < ends[other]
        # Before `other` ended its outcomes are unknown: nothing changes. After, the rate moves.
        np.testing.assert_array_equal(same.loc[before, "module_prior_fail_rate"].to_numpy(),
                                      same.loc[before, "module_prior_fail_rate_flipped"].to_numpy())
        after = same[~before]
        if len(after):
            assert (after["module_prior_fail_rate_flipped"] > after["module_prior_fail_rate"]).all()
            checked += 1
    assert checked >= 1
    assert history.loc[history["module_prior_presentations"] == 0, "module_prior_fail_rate"].isna().all()


def test_a_students_earlier_result_counts_from_when_it_is_known_never_their_own() -> None:
    # 2014B ends the day before 2014J starts; a student who failed it and registered for 2014J in August
    # is seen as such from 2014B's result date on (mid-2014J), not at registration and not only next year.
    regs = pd.DataFrame({
        "id_student": [7, 7],
        "course_start": [pd.Timestamp(presentation_start("2014B")), pd.Timestamp(presentation_start("2014J"))],
        "date_registration": [-20, -60],
        "course_length": [234, 262],
        "final_result": ["Fail", "Withdrawn"],
    })
    history = _student_history(regs)

    def as_of(day: int) -> pd.Series:
        stamp = day_end_timestamp(pd.Series([regs.loc[1, "course_start"]]), [day])[0]
        return history[history["event_timestamp"] <= stamp].iloc[-1]

    known = regs.loc[0, "course_start"] + pd.Timedelta(days=234 + 1 + RESULT_LAG_DAYS)
    known_day = (known - regs.loc[1, "course_start"]).days - 1  # the 2014J day at whose end the Fail is known
    assert 0 < known_day < 35
    assert as_of(known_day - 1)["prior_fail_or_withdrawn"] == 0
    assert as_of(known_day)["prior_fail_or_withdrawn"] == 1 and as_of(35)["prior_presentations"] == 1
    # Its own outcome never reaches a snapshot of the 2014J presentation, up to and including its last day.
    assert as_of(262)["prior_presentations"] == 1
