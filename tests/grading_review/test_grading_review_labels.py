"""Instructor decisions become training rows: ASAP-format, on the prompt's scale, in training folds only, and
readable by the same loader `learnloop train essays --with-platform-labels` uses."""

from __future__ import annotations

from grading_review_fixtures import PROMPT, _grading_fixtures, essay

from grading_nlp.api import grade_pending_essays, platform_labelled_essays


def test_decisions_become_asap_rows_that_extend_the_training_corpus(api, review_settings, tmp_path, monkeypatch):
    from grading_nlp.cli import _with_platform_labels
    from learnloop.datasets import load_essays

    instructor = api.person("instructor", "Ina")
    course = api.essay_course(instructor)
    learners = [api.person("student", f"L{i}") for i in range(3)]
    ids = [api.submit(learner, course, essay(q, seed=30 + i)).json()["id"]
           for i, (learner, q) in enumerate(zip(learners, (0.9, 0.3, 0.6), strict=True))]
    assert grade_pending_essays(settings=review_settings)["suggested"] == 3
    ai = {i["submission_id"]: i["ai_score"] for i in api.queue(instructor, course).json()["data"]}
    api.client.post(f"/api/v1/submissions/{ids[0]}/ai-grade/accept", headers=instructor.headers, json={})
    override = 0 if ai[ids[1]] != 0 else 1
    api.client.post(f"/api/v1/submissions/{ids[1]}/ai-grade/override", headers=instructor.headers,
                    json={"score": override, "comment": "Too short for this prompt."})
    # ids[2] is undecided: no label yet.

    rows = platform_labelled_essays(settings=review_settings)
    assert len(rows) == 2 and set(rows["essay_set"]) == {PROMPT} and set(rows["fold"]) <= {0, 1, 2, 3}
    by_ai = rows.set_index("accepted_ai")
    assert by_ai.loc[True, "domain1_score"] == ai[ids[0]] and by_ai.loc[False, "domain1_score"] == override
    assert by_ai.loc[False, "ai_score"] == ai[ids[1]]

    corpus = _grading_fixtures().write_tsv(_grading_fixtures().synthetic_essays({PROMPT: 30}), tmp_path / "c.tsv")
    monkeypatch.setenv("LEARNLOOP_DATA_DIR", str(review_settings.data_dir))
    monkeypatch.setenv("LEARNLOOP_DATABASE_URL", review_settings.sqlalchemy_url)
    from learnloop.settings import get_settings

    get_settings.cache_clear()
    try:
        combined = load_essays(_with_platform_labels(corpus))
    finally:
        get_settings.cache_clear()
    assert len(combined) == 32 and combined["essay_id"].is_unique
    assert sorted(combined.tail(2)["domain1_score"]) == sorted([ai[ids[0]], override])
