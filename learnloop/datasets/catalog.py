"""Course catalog reader: edX and Coursera pages normalised to one item table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from learnloop.datasets._locate import dataset_dir
from learnloop.datasets._schema import Column, read_table
from learnloop.errors import DataValidationError

CATALOG_COLUMNS = ["item_id", "source", "title", "description", "level", "subject", "url"]


def load_catalog(root: Path | None = None) -> pd.DataFrame:
    """Read edx_courses.csv and/or coursera_courses.csv under ``root`` (default ``<datasets>/course_catalog``).

    Returns one row per course with ``item_id`` (stable: source + url), title, description, level, subject.
    """
    folder = Path(root) if root is not None else dataset_dir("course_catalog")
    parts = []
    edx_path, coursera_path = folder / "edx_courses.csv", folder / "coursera_courses.csv"
    if edx_path.exists():
        edx = read_table(edx_path, [Column("title"), Column("course_url"), Column("summary", nullable=True),
                                    Column("course_description", nullable=True), Column("Level", nullable=True),
                                    Column("subject", nullable=True)])
        description = edx["course_description"].fillna("").where(edx["course_description"].notna(), "")
        description = (edx["summary"].fillna("") + "\n" + description).str.strip()
        parts.append(pd.DataFrame({"source": "edx", "title": edx["title"], "description": description,
                                   "level": edx["Level"], "subject": edx["subject"], "url": edx["course_url"]}))
    if coursera_path.exists():
        cou = read_table(coursera_path, [Column("course_title"), Column("course_url"),
                                         Column("course_description", nullable=True),
                                         Column("course_difficulty", nullable=True),
                                         Column("course_organization", nullable=True)])
        parts.append(pd.DataFrame({"source": "coursera", "title": cou["course_title"],
                                   "description": cou["course_description"].fillna(""),
                                   "level": cou["course_difficulty"], "subject": cou["course_organization"],
                                   "url": cou["course_url"]}))
    if not parts:
        raise DataValidationError(folder, "no edx_courses.csv or coursera_courses.csv")
    items = pd.concat(parts, ignore_index=True)
    if items["url"].duplicated().any():
        raise DataValidationError(folder, "duplicate course_url", column="course_url")
    items["item_id"] = items["source"] + ":" + items["url"].str.rsplit("/", n=1).str[-1].where(
        items["url"].str.rsplit("/", n=1).str[-1] != "", items["url"])
    items["item_id"] = items["item_id"].where(~items["item_id"].duplicated(keep=False),
                                              items["source"] + ":" + items["url"])
    return items[CATALOG_COLUMNS]
