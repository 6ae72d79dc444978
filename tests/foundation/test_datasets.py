"""The readers: real data and synthetic data go through the same code; corrupt files name file and column."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from learnloop.datasets import (
    PROMPT_SCORE_RANGES,
    check_datasets,
    load_beir,
    load_catalog,
    load_essays,
    load_oulad,
)
from learnloop.errors import DataValidationError


def _read_all(root):
    oulad = load_oulad(root / "oulad")
    essays = load_essays(root / "asap_aes" / "essays.tsv")
    catalog = load_catalog(root / "course_catalog")
    return oulad, essays, catalog


def _assert_reader_contract(oulad, essays, catalog):
    for name, rows in oulad.row_counts().items():
        assert rows > 0, name
    assert oulad.registrations["date_unregistration"].dtype == "Int64"
    assert oulad.student_vle["sum_click"].min() >= 0
    assert set(oulad.student_info["final_result"]) <= {"Pass", "Withdrawn", "Fail", "Distinction"}
    assert list(essays.columns[:7]) == ["essay_id", "essay_set", "fold", "essay", "domain1_score",
                                        "rater1_domain1", "rater2_domain1"]
    for prompt, group in essays.groupby("essay_set"):
        low, high = PROMPT_SCORE_RANGES[int(prompt)]
        assert group["domain1_score"].between(low, high).all()
    assert catalog["item_id"].is_unique and (catalog["title"].str.len() > 0).all()


def test_synthetic_data_drives_the_same_readers(synth_root):
    oulad, essays, catalog = _read_all(synth_root)
    _assert_reader_contract(oulad, essays, catalog)
    beir = load_beir(synth_root / "synth_beir")
    assert {"train", "test"} <= set(beir.qrels)


@pytest.mark.realdata
def test_real_data_drives_the_same_readers(real_datasets_dir):
    oulad, essays, catalog = _read_all(real_datasets_dir)
    _assert_reader_contract(oulad, essays, catalog)
    counts = oulad.row_counts()
    assert counts["student_info"] == 32_593 and counts["student_assessment"] == 173_912
    assert counts["student_vle"] == 753_564
    assert oulad.click_presentations == {("AAA", "2013J"), ("AAA", "2014J"), ("BBB", "2013B")}
    assert len(essays) == 12_978 and len(catalog) == 1_974
    scifact = load_beir(real_datasets_dir / "scifact")
    assert len(scifact.corpus) == 5_183 and scifact.qrels["test"]["query_id"].nunique() == 300


def test_synthetic_oulad_has_real_signal(synth_root):
    oulad = load_oulad(synth_root / "oulad")
    key = ["code_module", "code_presentation", "id_student"]
    clicks = oulad.student_vle.groupby(key)["sum_click"].sum().rename("clicks").reset_index()
    frame = oulad.student_info.merge(clicks, on=key, how="inner")
    at_risk = frame["final_result"].isin(["Withdrawn", "Fail"])
    assert frame.loc[at_risk, "clicks"].median() < 0.6 * frame.loc[~at_risk, "clicks"].median()
    subs = oulad.student_assessment.merge(oulad.assessments, on="id_assessment").merge(
        oulad.student_info, left_on=["code_module", "code_presentation", "id_student"], right_on=key)
    bad = subs["final_result"].isin(["Withdrawn", "Fail"])
    assert subs.loc[bad, "score"].mean() < subs.loc[~bad, "score"].mean() - 10
    # Absent click logs stay absent: some presentations have no clicks at all.
    assert 0 < len(oulad.click_presentations) < len(oulad.courses)


def test_synthetic_essays_have_real_signal(synth_root):
    essays = load_essays(synth_root / "asap_aes" / "essays.tsv")
    lengths = essays["essay"].str.split().str.len()
    for _, group in essays.groupby("essay_set"):
        corr = np.corrcoef(lengths[group.index], group["domain1_score"])[0, 1]
        assert corr > 0.5


@pytest.fixture
def corrupt_root(synth_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    return root


def test_truncated_csv_names_file_and_column(corrupt_root):
    path = corrupt_root / "oulad" / "studentAssessment.csv"
    text = path.read_text()
    path.write_text(text[: len(text) // 2].rsplit(",", 2)[0])  # cut inside a row
    with pytest.raises(DataValidationError) as caught:
        load_oulad(corrupt_root / "oulad")
    assert "studentAssessment.csv" in str(caught.value)
    assert caught.value.column in {"is_banked", "score", "date_submitted"}


def test_wrong_column_names_file_and_column(corrupt_root):
    path = corrupt_root / "oulad" / "studentInfo.csv"
    frame = pd.read_csv(path)
    frame.rename(columns={"final_result": "result"}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"studentInfo\.csv, column 'final_result': missing column"):
        load_oulad(corrupt_root / "oulad")


def test_non_numeric_value_names_line(corrupt_root):
    path = corrupt_root / "asap_aes" / "essays.tsv"
    lines = path.read_text().splitlines()
    cells = lines[3].split("\t")
    cells[lines[0].split("\t").index("domain1_score")] = "seven"
    lines[3] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"column 'domain1_score': non-numeric value 'seven' on line 4"):
        load_essays(path)


def test_check_reports_invalid_without_hiding_valid_sets(corrupt_root):
    (corrupt_root / "course_catalog" / "edx_courses.csv").write_text("title,oops\nA,1\n")
    report = check_datasets(corrupt_root)
    assert report["ok"] is False
    assert report["datasets"]["course_catalog"]["status"] == "invalid"
    assert report["datasets"]["course_catalog"]["column"] == "course_url"
    assert report["datasets"]["oulad"]["status"] == "ok"


def test_beir_qrels_naming_unknown_documents_are_rejected(synth_root, tmp_path):
    root = tmp_path / "beir"
    shutil.copytree(synth_root / "synth_beir", root)
    with (root / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q1\tno-such-doc\t1\n")
    with pytest.raises(DataValidationError, match="unknown ids"):
        load_beir(root)
