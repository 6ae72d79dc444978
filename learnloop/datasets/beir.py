"""BEIR-format retrieval data set reader (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from learnloop.datasets._schema import Column, Kind, read_table
from learnloop.errors import DataValidationError


@dataclass
class BeirDataset:
    name: str
    corpus: pd.DataFrame  # doc_id, title, text
    queries: pd.DataFrame  # query_id, text
    qrels: dict[str, pd.DataFrame] = field(default_factory=dict)  # split -> query_id, doc_id, score

    def row_counts(self) -> dict[str, int]:
        counts = {"corpus": len(self.corpus), "queries": len(self.queries)}
        counts.update({f"qrels/{split}": len(frame) for split, frame in self.qrels.items()})
        return counts


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DataValidationError(path, "file not found")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataValidationError(path, f"line {line_no} is not valid JSON ({exc.msg})") from exc
            for key in required:
                if key not in row:
                    raise DataValidationError(path, f"line {line_no} has no '{key}'", column=key)
            rows.append(row)
    if not rows:
        raise DataValidationError(path, "is empty")
    return rows


def load_beir(folder: Path) -> BeirDataset:
    """Read any BEIR-format folder. Qrels that name unknown documents or queries are rejected."""
    folder = Path(folder)
    corpus = pd.DataFrame(
        [{"doc_id": str(r["_id"]), "title": r.get("title") or "", "text": r.get("text") or ""}
         for r in _read_jsonl(folder / "corpus.jsonl", ("_id", "text"))])
    queries = pd.DataFrame(
        [{"query_id": str(r["_id"]), "text": r["text"]} for r in _read_jsonl(folder / "queries.jsonl", ("_id", "text"))])
    if corpus["doc_id"].duplicated().any():
        raise DataValidationError(folder / "corpus.jsonl", "duplicate document ids", column="_id")
    qrels: dict[str, pd.DataFrame] = {}
    qrel_cols = [Column("query-id"), Column("corpus-id"), Column("score", Kind.integer)]
    for path in sorted((folder / "qrels").glob("*.tsv")):
        frame = read_table(path, qrel_cols, sep="\t", quoting=csv.QUOTE_NONE)
        frame = frame.rename(columns={"query-id": "query_id", "corpus-id": "doc_id"})[["query_id", "doc_id", "score"]]
        for column, known in (("doc_id", set(corpus["doc_id"])), ("query_id", set(queries["query_id"]))):
            unknown = ~frame[column].isin(known)
            if unknown.any():
                raise DataValidationError(path, f"{int(unknown.sum())} judgments name unknown ids "
                                                f"(e.g. {frame.loc[unknown, column].iloc[0]!r})", column=column)
        qrels[path.stem] = frame
    if not qrels:
        raise DataValidationError(folder / "qrels", "no qrels/<split>.tsv file")
    return BeirDataset(name=folder.name, corpus=corpus, queries=queries, qrels=qrels)
