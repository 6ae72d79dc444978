"""Helpers for the feature-store tests: small OULAD-shaped tables built in memory (fast, with known answers),
a store built from them, and the online/offline parity check (shared by the embedded and Redis/PostgreSQL
tests). A uniquely named module, not conftest, so test directories never import each other's conftest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.api import feature_names, service_join_keys, service_names, source_path
from learnloop.datasets import OuladTables
from learnloop.settings import Settings
from pipelines.api import get_online_features, historical_features

PRESENTATIONS = [("AAA", "2013J"), ("AAA", "2014B"), ("BBB", "2013J"), ("BBB", "2014J")]
CLICK_PRESENTATIONS = {("AAA", "2013J"), ("BBB", "2014J")}
TYPES = ["forumng", "homepage", "oucontent", "quiz", "resource", "glossary"]


def synthetic_oulad(n_students: int = 30, seed: int = 3) -> OuladTables:
    """OULAD-shaped tables with every trap present: late registrations, unregistrations, banked results,
    exams without deadline or submissions, missing scores, presentations without clicks."""
    rng = np.random.default_rng(seed)
    courses, assessments, vle, info, regs, subs, clicks = [], [], [], [], [], [], []
    next_assessment, next_site = 100, 5000
    for p_index, (module, presentation) in enumerate(PRESENTATIONS):
        length = 240 + 7 * p_index
        courses.append((module, presentation, length))
        plan = [("TMA", 19, 25.0), ("TMA", 54, 25.0), ("TMA", 96, 25.0), ("TMA", 150, 25.0), ("CMA", 33, 0.0),
                ("Exam", None if module == "AAA" else length - 5, 100.0)]
        items = []
        for kind, date, weight in plan:
            assessments.append((module, presentation, next_assessment, kind, date, weight))
            items.append((next_assessment, kind, date))
            next_assessment += 1
        sites = []
        for activity in TYPES:
            vle.append((next_site, module, presentation, activity, None, None))
            sites.append(next_site)
            next_site += 1
        for s in range(n_students):
            student = 1000 + s if s < n_students // 2 else 1000 + 100 * (p_index + 1) + s  # some recur
            engagement = rng.normal()
            reg_day = int(rng.integers(-120, -5)) if s % 10 else int(rng.integers(20, 60))  # late registrants
            unreg = int(rng.integers(10, 200)) if engagement < -0.6 else None
            result = ("Withdrawn" if unreg is not None else
                      "Fail" if engagement < -0.1 else "Pass" if engagement < 1 else "Distinction")
            info.append((module, presentation, student, "F" if s % 2 else "M", "Scotland", "A Level or Equivalent",
                         None if s % 13 == 0 else "20-30%", "0-35" if s % 3 else "35-55", int(s % 4 == 0), 60,
                         "Y" if s % 7 == 0 else "N", result))
            regs.append((module, presentation, student, None if s == 1 else reg_day, unreg))
            for assessment, kind, date in items:
                if kind == "Exam":
                    if date is not None and unreg is None:
                        subs.append((assessment, student, date + 1, 0, float(rng.integers(30, 90))))
                    continue
                if s % 11 == 0 and kind == "TMA" and date == 19:
                    subs.append((assessment, student, -1, 1, 70.0))  # banked from an earlier attempt
                    continue
                if unreg is not None and date > unreg or rng.random() < 0.15 - 0.1 * engagement:
                    continue
                submitted = date + int(rng.integers(-6, 9))
                score = None if s % 17 == 0 else float(np.clip(60 + 15 * engagement + rng.normal(0, 10), 0, 100))
                subs.append((assessment, student, submitted, 0, score))
            if (module, presentation) in CLICK_PRESENTATIONS and s % 9 != 4:  # a few never click
                last = unreg if unreg is not None else length
                for day in range(-10, last + 1):
                    if rng.random() < 0.25 + 0.1 * engagement:
                        site = sites[int(rng.integers(0, len(sites)))]
                        clicks.append((module, presentation, student, site, day, int(rng.integers(1, 12))))

    def frame(rows, columns, ints=()):
        out = pd.DataFrame(rows, columns=columns)
        for column in ints:
            out[column] = out[column].astype("Int64")
        return out

    return OuladTables(
        courses=frame(courses, ["code_module", "code_presentation", "module_presentation_length"]),
        assessments=frame(assessments, ["code_module", "code_presentation", "id_assessment", "assessment_type",
                                        "date", "weight"], ints=["date"]),
        vle=frame(vle, ["id_site", "code_module", "code_presentation", "activity_type", "week_from", "week_to"],
                  ints=["week_from", "week_to"]),
        student_info=frame(info, ["code_module", "code_presentation", "id_student", "gender", "region",
                                  "highest_education", "imd_band", "age_band", "num_of_prev_attempts",
                                  "studied_credits", "disability", "final_result"]),
        registrations=frame(regs, ["code_module", "code_presentation", "id_student", "date_registration",
                                   "date_unregistration"], ints=["date_registration", "date_unregistration"]),
        student_assessment=frame(subs, ["id_assessment", "id_student", "date_submitted", "is_banked", "score"]),
        student_vle=frame(clicks, ["code_module", "code_presentation", "id_student", "id_site", "date",
                                   "sum_click"]),
        root=Path("synthetic"),
    )


@dataclass
class BuiltStore:
    settings: Settings
    store: object
    tables: OuladTables
    end: pd.Timestamp


def build_store(settings: Settings, tables: OuladTables, *, project: str = "learnloop") -> BuiltStore:
    from features.api import apply, get_store
    from pipelines.api import build_offline, materialize

    build_offline(tables=tables, settings=settings)
    store = get_store(settings, project=project)
    apply(store)
    report = materialize(store=store)
    return BuiltStore(settings=settings, store=store, tables=tables, end=pd.Timestamp(report["end"]))




def parity_entities(built, service: str, rng: np.random.Generator, count: int = 25) -> list[dict]:
    regs = pd.read_parquet(built.settings.feast_dir / "data" / "registrations.parquet")
    picked = regs.iloc[rng.choice(len(regs), size=count, replace=False)]
    rows = [{"student_course": key} for key in picked["student_course"]]
    rows.append({"student_course": "424242:BBB-2014J"})  # unknown: both sides must say "missing" alike
    if "id_site" in service_join_keys(service):
        sites = pd.read_parquet(source_path("content_item_popularity", built.settings))["id_site"].unique()
        for row in rows:
            row["id_site"] = int(rng.choice(sites))
    return rows


def assert_online_offline_parity(built) -> int:
    """Online features after materialization equal offline features as of the materialization end, through
    both online readers (the lean one and Feast's generic ``get_online_features``)."""
    rng = np.random.default_rng(0)
    checked = 0
    for service in service_names():
        rows = parity_entities(built, service, rng)
        online = get_online_features(service=service, entity_rows=rows, store=built.store)
        generic = get_online_features(service=service, entity_rows=rows, store=built.store, generic=True)
        pd.testing.assert_frame_equal(online, generic)
        request = online[service_join_keys(service)].copy()
        request["event_timestamp"] = built.end
        offline = historical_features(store=built.store, service=service, entity_frame=request)
        names = feature_names(service)
        assert list(online.columns[-len(names):]) == names
        pd.testing.assert_frame_equal(online[names], offline[names], check_exact=False, rtol=1e-12)
        present = online[names].notna().sum().sum()
        assert present > len(rows)  # most entities really had features, not NaN == NaN everywhere
        checked += len(names)
    return checked
