"""Latency of one hybrid search on a realistic catalog, query embedding included.

Items: ``n_items`` courses of the edX + Coursera catalogs (fixed sample), spread round-robin over
``n_courses`` pseudo-courses. Queries: titles of catalog entries that were *not* indexed (short, realistic
learner queries). Two scenarios: the learner may see every course (no filter) and only 3 courses (filter).
The index lives in an in-memory Qdrant (the query path is the same as on disk; see ``_search.index``).
"""

from __future__ import annotations

import time

import numpy as np

from recommender._search.index import SearchIndex
from recommender.data import ContentItem

WARMUP = 10


def _percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples)
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
        "p99": round(float(np.percentile(values, 99)), 2),
        "mean": round(float(values.mean()), 2),
    }


def bench_catalog_search(*, embedder, n_items: int = 1000, n_courses: int = 20, n_queries: int = 300) -> dict:
    from qdrant_client import QdrantClient

    from learnloop.datasets import load_catalog

    catalog = load_catalog().sample(frac=1.0, random_state=7).reset_index(drop=True)
    if len(catalog) <= n_items:  # the queries are the titles of catalog items left out of the index
        from learnloop.errors import InvalidInput

        raise InvalidInput(f"the course catalog holds {len(catalog):,} items: index fewer than that (--items "
                           f"{max(len(catalog) * 3 // 4, 1)}, say) so the rest can be the queries")
    indexed, held_out = catalog.iloc[:n_items], catalog.iloc[n_items:]
    items = [
        ContentItem(
            item_id=str(row.item_id),
            course_id=f"course-{i % n_courses}",
            title=str(row.title),
            body=str(row.description or ""),
            url=str(row.url),
        )
        for i, row in enumerate(indexed.itertuples(index=False))
    ]
    queries = [str(t) for t in held_out["title"].tolist()]
    queries = (queries * (n_queries // max(len(queries), 1) + 1))[:n_queries]

    client = QdrantClient(":memory:")
    index = SearchIndex(client=client, embedder=embedder, server_mode=False)
    started = time.perf_counter()
    index.upsert(items)
    index_seconds = time.perf_counter() - started
    snapshot = index.snapshot()

    all_courses = [f"course-{c}" for c in range(n_courses)]
    rng = np.random.default_rng(11)
    scenarios = {
        "unfiltered": [all_courses] * len(queries),
        "filtered_3_courses": [list(rng.choice(all_courses, size=3, replace=False)) for _ in queries],
    }
    report: dict = {
        "items": len(items),
        "passages": int(snapshot.matrix.shape[0]),
        "courses": n_courses,
        "queries": len(queries),
        "embedding": embedder.model_id,
        "index_seconds": round(index_seconds, 1),
    }
    for query in queries[:WARMUP]:
        index.search(query, allowed_course_ids=all_courses)

    embed_ms = []
    for query in queries:
        t0 = time.perf_counter()
        embedder.encode_query(query)
        embed_ms.append((time.perf_counter() - t0) * 1000)
    report["query_embedding_ms"] = _percentiles(embed_ms)

    leaks = 0
    for name, allowed_lists in scenarios.items():
        samples = []
        for query, allowed in zip(queries, allowed_lists, strict=True):
            t0 = time.perf_counter()
            hits = index.search(query, allowed_course_ids=allowed, limit=10)
            samples.append((time.perf_counter() - t0) * 1000)
            leaks += sum(hit.course_id not in allowed for hit in hits)
        report[name] = {"latency_ms": _percentiles(samples)}
    report["unauthorized_hits"] = leaks
    report["latency_ms"] = report["filtered_3_courses"]["latency_ms"]
    client.close()
    return report
