"""Behavioural tests on a grader trained on a slice of real ASAP prompt 4 (Made-With-ML style invariances)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from grading_nlp.api import grade_essay
from grading_nlp.data import GradeStatus

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def held_out_essays(real_datasets_dir) -> list[str]:
    from learnloop.datasets import load_essays

    essays = load_essays(real_datasets_dir / "asap_aes" / "essays.tsv")
    prompt = essays[essays["essay_set"] == 4]
    return prompt["essay"].iloc[450:490].tolist()  # not in the 450 training essays


def test_appending_unrelated_gibberish_does_not_raise_grades(real_prompt_settings, held_out_essays) -> None:
    rng = np.random.default_rng(0)
    raised = []
    for essay in held_out_essays[:20]:
        junk = " ".join("".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), size=6)) for _ in range(60))
        before = grade_essay(essay, 4, settings=real_prompt_settings)
        after = grade_essay(essay + " " + junk, 4, settings=real_prompt_settings)
        assert after.status is GradeStatus.suggested
        raised.append(after.score - before.score)
    assert max(raised) <= 1
    assert np.mean(raised) <= 0.25


def test_placeholder_names_do_not_change_grades(real_prompt_settings, held_out_essays) -> None:
    with_names = [e for e in held_out_essays if re.search(r"@[A-Z]+\d", e)][:8]
    assert with_names, "the slice should hold anonymised names"
    for essay in with_names:
        renamed = re.sub(r"@([A-Z]+)(\d+)", lambda m: f"@{m.group(1)}{int(m.group(2)) + 7}", essay)
        assert grade_essay(renamed, 4, settings=real_prompt_settings).score == \
            grade_essay(essay, 4, settings=real_prompt_settings).score


def test_real_grades_agree_with_raters_on_held_out_essays(real_prompt_settings, real_datasets_dir) -> None:
    from sklearn.metrics import cohen_kappa_score

    from learnloop.datasets import load_essays

    essays = load_essays(real_datasets_dir / "asap_aes" / "essays.tsv")
    held = essays[essays["essay_set"] == 4].iloc[450:610]
    predicted = [grade_essay(e, 4, settings=real_prompt_settings).score for e in held["essay"]]
    assert cohen_kappa_score(held["domain1_score"], predicted, weights="quadratic") > 0.6
