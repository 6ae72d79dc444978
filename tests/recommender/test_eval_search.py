"""`learnloop eval search` on a tiny BEIR folder written here: report shape, metric values, train-only tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from recommender import cli as recommender_cli
from recommender._search.beir_eval import _evaluate

DOCS = {
    "d1": ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into glucose and oxygen."),
    "d2": ("Mitochondria", "The mitochondrion produces ATP through cellular respiration."),
    "d3": ("Plate tectonics", "Continents drift slowly on plates floating over the mantle."),
    "d4": ("Volcanoes", "Magma rises through the crust and erupts as lava."),
    "d5": ("Python loops", "A for loop iterates over the items of a list in Python."),
    "d6": ("Recursion", "A function that calls itself solves problems by splitting them into smaller ones."),
    "d7": ("Renaissance art", "Painters in Florence used linear perspective and light."),
    "d8": ("Baroque music", "Bach wrote fugues and cantatas with intricate counterpoint."),
}
QUERIES = {
    "q1": "how do plants make sugar from light",
    "q2": "energy production in cells ATP",
    "q3": "why do continents move",
    "q4": "lava eruption",
    "q5": "iterate over a list",
    "q6": "functions calling themselves",
    "q7": "perspective in Florentine painting",
    "q8": "who wrote fugues",
}
TEST = {"q1": "d1", "q3": "d3", "q5": "d5", "q7": "d7"}
TRAIN = {"q2": "d2", "q4": "d4", "q6": "d6", "q8": "d8"}


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as handle:
        for doc_id, (title, text) in DOCS.items():
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as handle:
        for query_id, text in QUERIES.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    for split, pairs in (("test", TEST), ("train", TRAIN)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d in pairs.items()]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_metrics_match_a_hand_computation():
    import pandas as pd

    qrels = pd.DataFrame({"query_id": ["a", "b"], "doc_id": ["x", "y"], "score": [1, 1]})
    run = {"a": {"z": 2.0, "x": 1.0}, "b": {"w": 1.0}}  # a: hit at rank 2; b: no hit
    scores = _evaluate(qrels, run)
    assert scores["ndcg@10"] == pytest.approx((1 / 1.5849625) / 2, abs=1e-6)
    assert scores["mrr@10"] == pytest.approx(0.25)
    assert scores["recall@100"] == pytest.approx(0.5)
    graded = pd.DataFrame({"query_id": ["a", "a"], "doc_id": ["x", "y"], "score": [2, 1]})
    ideal = 2 + 1 / np.log2(3)
    assert _evaluate(graded, {"a": {"y": 2.0, "x": 1.0}})["ndcg@10"] == pytest.approx(
        (1 + 2 / np.log2(3)) / ideal
    )


def test_eval_search_command_prints_the_report(search_settings, tmp_path: Path):
    folder = write_beir(tmp_path / "tinybeir")
    app = typer.Typer()
    groups = {"eval": typer.Typer(), "bench": typer.Typer(), "train": typer.Typer(), "search": typer.Typer()}
    recommender_cli.register(groups=groups, root=app)
    app.add_typer(groups["eval"], name="eval")

    result = CliRunner().invoke(app, ["eval", "search", "--data", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["dataset"] == "tinybeir"
    for metric in ("ndcg@10", "recall@100", "mrr@10"):
        assert set(report[metric]) == {"bm25", "dense", "hybrid"}
        assert all(0.0 <= v <= 1.0 for v in report[metric].values())
    assert report["recall@100"]["hybrid"] == 1.0  # 8 documents: everything is retrieved
    assert report["ndcg@10"]["dense"] >= 0.75  # paraphrased queries: MiniLM finds them
    assert report["ndcg@10"]["hybrid"] >= report["ndcg@10"]["bm25"]
    assert report["fusion"]["tuned_on"] == "train"
    assert report["n_test_queries"] == len(TEST)
    assert report["latency_ms"]["p50"] > 0

    (folder / "qrels" / "test.tsv").unlink()
    failed = CliRunner().invoke(app, ["eval", "search", "--data", str(folder), "--json"])
    assert failed.exit_code == 2
