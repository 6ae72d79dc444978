"""Retrieval quality of BM25, dense and hybrid search on any BEIR-format folder.

The corpus goes through the product's own :class:`SearchIndex` (chunking, BM25, MAX_SIM over passages,
fusion), held in an in-memory Qdrant so an evaluation never touches the installation's index. Embeddings come
from the disk cache, so only the first run on a corpus pays for embedding it.

Fusion is chosen on the **train** qrels only (method ∈ {convex, rrf} × alpha on a 0.05 grid, by NDCG@10);
when the folder has no train qrels the default (convex, alpha 0.5) is used and the report says so. Test
qrels only ever score the chosen configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learnloop.errors import InvalidInput
from recommender._search.index import DEFAULT_CANDIDATES, Candidates, FusionConfig, SearchIndex
from recommender.data import ContentItem, FusionMethod

COURSE = "beir"  # every document of a BEIR corpus belongs to one pseudo-course
METRICS = ("ndcg@10", "recall@100", "mrr@10")
ALPHAS = tuple(round(a, 2) for a in np.linspace(0.0, 1.0, 21))


@dataclass
class _QueryCandidates:
    doc_ids: list[str]
    cands: Candidates


def _ranked(doc_ids: list[str], scores: np.ndarray, k: int) -> dict[str, float]:
    keep = ~np.isnan(scores)
    ids = np.asarray(doc_ids, dtype=object)[keep]
    values = scores[keep]
    order = np.argsort(-values, kind="stable")[:k]
    # A tiny rank-based offset makes the order total (no tie-breaking by doc id downstream).
    return {str(ids[i]): float(values[i]) - 1e-9 * rank for rank, i in enumerate(order)}


def _runs(
    per_query: dict[str, _QueryCandidates], index: SearchIndex, config: FusionConfig, k: int
) -> dict[str, dict[str, dict[str, float]]]:
    runs: dict[str, dict[str, dict[str, float]]] = {"bm25": {}, "dense": {}, "hybrid": {}}
    for qid, qc in per_query.items():
        runs["bm25"][qid] = _ranked(qc.doc_ids, qc.cands.bm25, k)
        runs["dense"][qid] = _ranked(qc.doc_ids, qc.cands.dense, k)
        runs["hybrid"][qid] = _ranked(qc.doc_ids, index.fuse(qc.cands, config), k)
    return runs


def _evaluate(qrels_frame, run: dict[str, dict[str, float]], metrics=METRICS) -> dict[str, float]:
    """Mean NDCG@k (trec_eval ``ndcg_cut``: gain = relevance), recall@k and MRR@k over the judged queries.

    Written out rather than taken from ranx: ranx JIT-compiles its metrics with numba on first use in a
    process, which took over 10 minutes on this shared 2-core machine; these are a few numpy lines.
    """
    judged: dict[str, dict[str, int]] = {}
    for row in qrels_frame.itertuples(index=False):
        if int(row.score) > 0:
            judged.setdefault(str(row.query_id), {})[str(row.doc_id)] = int(row.score)
    totals = dict.fromkeys(metrics, 0.0)
    for qid, relevant in judged.items():
        ranked = sorted((run.get(qid) or {}).items(), key=lambda pair: -pair[1])
        gains = np.asarray([relevant.get(doc_id, 0) for doc_id, _ in ranked], dtype=np.float64)
        for metric in metrics:
            name, k = metric.split("@")
            top = gains[: int(k)]
            if name == "ndcg":
                discount = 1.0 / np.log2(np.arange(2, len(top) + 2))
                ideal = np.sort(np.fromiter(relevant.values(), dtype=np.float64))[::-1][: int(k)]
                ideal_dcg = float((ideal / np.log2(np.arange(2, len(ideal) + 2))).sum())
                totals[metric] += float((top * discount).sum()) / ideal_dcg
            elif name == "recall":
                totals[metric] += float((top > 0).sum()) / len(relevant)
            elif name == "mrr":
                hits = np.flatnonzero(top > 0)
                totals[metric] += 1.0 / (hits[0] + 1) if len(hits) else 0.0
            else:
                raise ValueError(f"unknown metric {metric}")
    return {metric: totals[metric] / max(len(judged), 1) for metric in metrics}


def tune_fusion(
    per_query: dict[str, _QueryCandidates], qrels_frame, index: SearchIndex, k: int
) -> tuple[FusionConfig, float]:
    """Best (method, alpha) by NDCG@10 on the given (train) qrels."""
    best: tuple[float, FusionConfig] | None = None
    for method in FusionMethod:
        for alpha in ALPHAS:
            config = FusionConfig(method=method, alpha=alpha, candidates=k)
            run = {
                qid: _ranked(qc.doc_ids, index.fuse(qc.cands, config), 10) for qid, qc in per_query.items()
            }
            score = _evaluate(qrels_frame, run, ("ndcg@10",))["ndcg@10"]
            # Prefer the simpler convex/0.5 on exact ties: strict improvement only.
            if best is None or score > best[0] + 1e-12:
                best = (score, config)
    assert best is not None
    return best[1], best[0]


def evaluate_beir(
    folder: Path,
    *,
    embedder,
    k: int = DEFAULT_CANDIDATES,
    latency_queries: int = 300,
    max_passages: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """The report of ``learnloop eval search`` (see the module docstring)."""
    from qdrant_client import QdrantClient

    from learnloop.datasets import load_beir

    dataset = load_beir(Path(folder))
    if "test" not in dataset.qrels:
        raise InvalidInput(f"{folder} has no qrels/test.tsv; a BEIR folder needs it to be evaluated")
    test_qrels = dataset.qrels["test"]
    train_qrels = dataset.qrels.get("train")
    queries = dict(
        zip(dataset.queries["query_id"].astype(str), dataset.queries["text"].astype(str), strict=True)
    )

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    items = [
        ContentItem(
            item_id=str(row.doc_id), course_id=COURSE, title=str(row.title or ""), body=str(row.text or "")
        )
        for row in dataset.corpus.itertuples(index=False)
    ]
    client = QdrantClient(":memory:")
    index = SearchIndex(client=client, embedder=embedder, server_mode=False, max_passages=max_passages)
    n_items = len(items)
    counter = [0]

    def on_embedded(n: int) -> None:
        counter[0] += n
        report("embedding passages", counter[0], 0)

    index.upsert(items, progress=on_embedded)
    report("indexed", n_items, n_items)

    test_ids = [q for q in dict.fromkeys(test_qrels["query_id"].astype(str)) if q in queries]
    train_ids = (
        [q for q in dict.fromkeys(train_qrels["query_id"].astype(str)) if q in queries]
        if train_qrels is not None
        else []
    )
    wanted = list(dict.fromkeys(test_ids + train_ids))
    query_vectors = embedder.encode([queries[q] for q in wanted])
    per_query: dict[str, _QueryCandidates] = {}
    for i, qid in enumerate(wanted):
        snap, cands = index.candidates(
            queries[qid], allowed_course_ids={COURSE}, k=k, query_vector=query_vectors[i]
        )
        per_query[qid] = _QueryCandidates([snap.items[p].item_id for p in cands.positions], cands)
        report("retrieving", i + 1, len(wanted))

    if train_ids:
        config, train_ndcg = tune_fusion({q: per_query[q] for q in train_ids}, train_qrels, index, k)
        tuned_on = "train"
    else:
        config, train_ndcg, tuned_on = FusionConfig(candidates=k), None, "default (no train qrels)"
    index.fusion = config

    runs = _runs({q: per_query[q] for q in test_ids}, index, config, k)
    results = {name: _evaluate(test_qrels, run) for name, run in runs.items()}

    # End-to-end latency of one hybrid search: query embedding (no cache) + both retrievers + fusion.
    latencies = []
    for qid in test_ids[:latency_queries]:
        started = time.perf_counter()
        index.search(queries[qid], allowed_course_ids={COURSE}, limit=10)
        latencies.append((time.perf_counter() - started) * 1000)
    client.close()

    return {
        "dataset": dataset.name,
        **{
            metric: {name: round(results[name][metric], 4) for name in ("bm25", "dense", "hybrid")}
            for metric in METRICS
        },
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2) if latencies else None,
            "p99": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
        },
        "fusion": {
            "method": config.method.value,
            "alpha": config.alpha,
            "tuned_on": tuned_on,
            "train_ndcg@10": round(train_ndcg, 4) if train_ndcg is not None else None,
        },
        "n_docs": n_items,
        "n_test_queries": len(test_ids),
        "embedding": embedder.model_id,
        "max_passages_per_doc": max_passages,
    }
