"""`learnloop eval essays --json --data FILE` prints one JSON object with the issue's keys."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_eval_essays_json_on_an_asap_format_file(tmp_path, settings) -> None:
    from grading_fixtures import synthetic_essays, write_tsv

    from learnloop.cli import build_app

    path = write_tsv(synthetic_essays({5: 65}, seed=9), tmp_path / "essays.tsv")
    result = CliRunner().invoke(build_app(), ["eval", "essays", "--json", "--data", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report) >= {"avg_qwk", "qwk_by_prompt", "exact", "adjacent", "cold_start_avg_qwk", "folds"}
    assert set(report["qwk_by_prompt"]) == {"5"}
    assert [f["fold"] for f in report["folds"]] == [0, 1, 2, 3, 4]
    # Latent quality drives the synthetic scores, so even the few-shot graders agree well with them.
    assert report["avg_qwk"] > 0.6
    assert report["cold_start_avg_qwk"] is not None and report["cold_start_essays"] == 50
    assert 0 <= report["exact"] <= report["adjacent"] <= 1
    assert report["avg_qwk"] == report["qwk_by_prompt"]["5"]
