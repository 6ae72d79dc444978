"""OULAD (Open University Learning Analytics Dataset) reader."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from learnloop.datasets._locate import dataset_dir
from learnloop.datasets._schema import Column, Kind, read_table
from learnloop.errors import DataValidationError

I, N = Kind.integer, Kind.number  # noqa: E741 - compact column specs below
RESULTS = frozenset({"Pass", "Withdrawn", "Fail", "Distinction"})
ASSESSMENT_TYPES = frozenset({"TMA", "CMA", "Exam"})
# A VLE activity type as a platform content kind (``platform_api`` ``ContentKind`` values): what the OULAD import
# stores and what the recommender's ranker sees as an item's kind, in training on OULAD and when serving.
_CONTENT_KIND = {"url": "link", "resource": "document", "oucontent": "document", "dataplus": "document",
                 "folder": "document"}


def content_kind(activity_type: str) -> str:
    """The platform content kind of an OULAD activity type (pages, forums, quizzes … are ``text``)."""
    return _CONTENT_KIND.get(activity_type, "text")


SCHEMAS: dict[str, tuple[str, list[Column]]] = {
    "courses": ("courses.csv", [
        Column("code_module"), Column("code_presentation"), Column("module_presentation_length", I, min_value=1)]),
    "assessments": ("assessments.csv", [
        Column("code_module"), Column("code_presentation"), Column("id_assessment", I),
        Column("assessment_type", choices=ASSESSMENT_TYPES), Column("date", I, nullable=True),
        Column("weight", N, min_value=0, max_value=100)]),
    "vle": ("vle.csv", [
        Column("id_site", I), Column("code_module"), Column("code_presentation"), Column("activity_type"),
        Column("week_from", I, nullable=True), Column("week_to", I, nullable=True)]),
    "student_info": ("studentInfo.csv", [
        Column("code_module"), Column("code_presentation"), Column("id_student", I), Column("gender"),
        Column("region"), Column("highest_education"), Column("imd_band", nullable=True), Column("age_band"),
        Column("num_of_prev_attempts", I, min_value=0), Column("studied_credits", I, min_value=0),
        Column("disability"), Column("final_result", choices=RESULTS)]),
    "registrations": ("studentRegistration.csv", [
        Column("code_module"), Column("code_presentation"), Column("id_student", I),
        Column("date_registration", I, nullable=True), Column("date_unregistration", I, nullable=True)]),
    "student_assessment": ("studentAssessment.csv", [
        Column("id_assessment", I), Column("id_student", I), Column("date_submitted", I),
        Column("is_banked", I, min_value=0, max_value=1), Column("score", N, nullable=True, min_value=0, max_value=100)]),
    "student_vle": ("studentVle.csv.gz", [
        Column("code_module"), Column("code_presentation"), Column("id_student", I), Column("id_site", I),
        Column("date", I), Column("sum_click", I, min_value=0)]),
}


@dataclass
class OuladTables:
    """The OULAD tables with upstream column names. ``student_vle`` is None when the click file is absent."""

    courses: pd.DataFrame
    assessments: pd.DataFrame
    vle: pd.DataFrame
    student_info: pd.DataFrame
    registrations: pd.DataFrame
    student_assessment: pd.DataFrame
    student_vle: pd.DataFrame | None
    root: Path

    def row_counts(self) -> dict[str, int]:
        return {f.name: (0 if getattr(self, f.name) is None else len(getattr(self, f.name)))
                for f in fields(self) if f.name != "root"}

    @property
    def click_presentations(self) -> set[tuple[str, str]]:
        """(module, presentation) pairs that have click data: absent clicks are not zero clicks."""
        if self.student_vle is None:
            return set()
        pairs = self.student_vle[["code_module", "code_presentation"]].drop_duplicates()
        return set(map(tuple, pairs.to_numpy()))


def load_oulad(root: Path | None = None, *, with_clicks: bool = True) -> OuladTables:
    """Read and validate every OULAD table under ``root`` (default: ``<datasets dir>/oulad``)."""
    folder = Path(root) if root is not None else dataset_dir("oulad")
    tables: dict[str, pd.DataFrame | None] = {}
    for name, (filename, columns) in SCHEMAS.items():
        path = folder / filename
        if name == "student_vle":
            if not with_clicks:
                tables[name] = None
                continue
            if not path.exists() and (folder / "studentVle.csv").exists():
                path = folder / "studentVle.csv"
            if not path.exists():
                tables[name] = None
                continue
        tables[name] = read_table(path, columns)
    _check_keys(folder, tables)
    return OuladTables(root=folder, **tables)


def _check_keys(folder: Path, tables: dict[str, pd.DataFrame | None]) -> None:
    key = ["code_module", "code_presentation", "id_student"]
    info, regs = tables["student_info"], tables["registrations"]
    if info.duplicated(key).any():
        raise DataValidationError(folder / "studentInfo.csv", "duplicate registration key", column="id_student")
    if len(regs.merge(info[key], on=key)) != len(regs):
        raise DataValidationError(folder / "studentRegistration.csv",
                                  "registrations without a studentInfo row", column="id_student")
    known = set(tables["assessments"]["id_assessment"])
    unknown = ~tables["student_assessment"]["id_assessment"].isin(known)
    if unknown.any():
        raise DataValidationError(folder / "studentAssessment.csv",
                                  f"{int(unknown.sum())} rows reference unknown assessments", column="id_assessment")
