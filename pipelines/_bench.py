"""Online read latency through a FeatureService (what the model service pays per request)."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from features.api import get_store, service_join_keys
from learnloop.errors import Unavailable
from pipelines._offline import registrations_path
from pipelines.api import get_online_features, online_feature_matrix


def _entity_rows(service: str, feast_dir, count: int, rng: np.random.Generator) -> list[dict]:
    path = registrations_path(feast_dir)
    if not path.exists():
        raise Unavailable(f"{path} is missing; run `learnloop features build` first")
    regs = pd.read_parquet(path, columns=["student_course", "course"])
    picked = regs.iloc[rng.choice(len(regs), size=min(count, len(regs)), replace=False)]
    rows = [{"student_course": key} for key in picked["student_course"]]
    if "id_site" in service_join_keys(service):
        sites = pd.read_parquet(feast_dir / "data" / "content_item_popularity.parquet", columns=["id_site"])
        site_ids = sites["id_site"].unique()
        for row in rows:
            row["id_site"] = int(rng.choice(site_ids))
    return rows


def bench_online(*, service: str, repeats: int = 2000, sizes: tuple[int, ...] = (1, 100)) -> dict:
    """p50/p99 milliseconds of ``pipelines.api.online_feature_matrix`` (FeatureService read + shared fill)
    per batch size, plus the same through ``get_online_features`` (adds the pandas DataFrame).

    Each timed call reads a different random batch of registrations, after a warm-up.
    """
    out = _bench(online_feature_matrix, service, repeats, sizes)
    frame = _bench(get_online_features, service, max(repeats // 4, 50), sizes)
    return {**out, "online_dataframe_ms": frame["online_ms"]}


def _bench(read, service: str, repeats: int, sizes: tuple[int, ...]) -> dict:
    store = get_store()
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}
    cpu_out: dict[str, dict[str, float]] = {}
    for size in sizes:
        batches = [_entity_rows(service, store.config.repo_path, size, rng) for _ in range(min(repeats, 50))]
        for batch in batches[:10]:  # warm-up: registry cache, SQLite pages, code paths
            read(service=service, entity_rows=batch, store=store)
        runs = repeats if size == 1 else max(repeats // 10, 50)
        timings, cpu = np.empty(runs), np.empty(runs)
        for i in range(runs):
            batch = batches[i % len(batches)]
            started, started_cpu = time.perf_counter(), time.thread_time()
            read(service=service, entity_rows=batch, store=store)
            cpu[i] = (time.thread_time() - started_cpu) * 1000.0
            timings[i] = (time.perf_counter() - started) * 1000.0
        out[str(size)] = {"p50": round(float(np.percentile(timings, 50)), 3),
                          "p99": round(float(np.percentile(timings, 99)), 3), "n": runs}
        # CPU time of the reading thread: what a read costs when the machine is shared (wall time is not).
        cpu_out[str(size)] = {"p50": round(float(np.percentile(cpu, 50)), 3),
                              "p99": round(float(np.percentile(cpu, 99)), 3)}
    return {"service": service, "online_store": store.config.online_store.type, "online_ms": out,
            "online_cpu_ms": cpu_out, "load_average_1m": round(os.getloadavg()[0], 2)}
