"""Online read latency through a FeatureService, on the path the model service uses.

``online_ms`` times serving's reader (``serving.api.open_online_reader`` via ``pipelines._online.reader_for``:
the FeatureService's views resolved once, Feast's keys, one prepared statement or Redis pipeline) plus the
shared fill policy — for 1 entity exactly what the model service does per request (``read`` + ``fill``), for
100 one batch read (``read_rows`` + ``fill``). ``feast_ms`` times Feast's own ``get_online_features`` on the
same entities for comparison, and ``online_dataframe_ms`` ``pipelines.api.get_online_features`` (adds the
pandas DataFrame for notebooks/training code). CPU time of the reading thread is reported next to wall time:
on a shared machine wall-time p99 measures the neighbours.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from features.api import get_store, service_join_keys
from learnloop.errors import Unavailable
from pipelines._offline import registrations_path
from pipelines.api import complete_entity_rows, get_online_features, online_feature_matrix


def _entity_pools(service: str, feast_dir, sizes: tuple[int, ...], rng: np.random.Generator,
                  pool: int = 50) -> dict[int, list[list[dict]]]:
    """``pool`` random batches of registrations (plus random content items where the service needs them)."""
    path = registrations_path(feast_dir)
    if not path.exists():
        raise Unavailable(f"{path} is missing; run `learnloop features build` first")
    keys = pd.read_parquet(path, columns=["student_course"])["student_course"].to_numpy()
    site_ids = None
    if "id_site" in service_join_keys(service):
        site_ids = pd.read_parquet(feast_dir / "data" / "content_item_popularity.parquet",
                                   columns=["id_site"])["id_site"].unique()
    pools: dict[int, list[list[dict]]] = {}
    for size in sizes:
        pools[size] = []
        for _ in range(pool):
            rows = [{"student_course": key} for key in rng.choice(keys, size=min(size, len(keys)), replace=False)]
            if site_ids is not None:
                for row in rows:
                    row["id_site"] = int(rng.choice(site_ids))
            pools[size].append(complete_entity_rows(service, rows))
    return pools


def bench_online(*, service: str, repeats: int = 2000, sizes: tuple[int, ...] = (1, 100), store=None,
                 reference_repeats: int | None = None) -> dict:
    """p50/p99 milliseconds (wall and CPU) of online reads of ``service`` per batch size; see the module
    docstring for what each figure times. Each timed call reads a different random batch, after a warm-up."""
    from pipelines._online import reader_for

    store = store or get_store()
    reader = reader_for(store, service)
    single = "student_course" in reader.join_keys and set(reader.join_keys) <= {"student_course", "id_student",
                                                                                 "course"}

    def serving_read(rows: list[dict]) -> None:
        if len(rows) == 1 and single:  # the model service's per-request call
            row = rows[0]
            reader.fill(reader.read(student_id=row["id_student"], course_id=row["course"]).values)
        else:
            reader.fill(reader.read_rows(rows))

    def feast_read(rows: list[dict]) -> None:
        online_feature_matrix(service=service, entity_rows=rows, store=store, generic=True)

    def frame_read(rows: list[dict]) -> None:
        get_online_features(service=service, entity_rows=rows, store=store)

    rng = np.random.default_rng(0)
    batches = _entity_pools(service, Path(store.config.repo_path), sizes, rng)
    probe = [row for pool in batches.values() for batch in pool[:5] for row in batch]
    if np.isnan(reader.read_rows(probe)).all():  # timing reads that find nothing would measure nothing
        raise Unavailable(f"the online store holds no features of {service} for {len(probe)} sampled registrations; "
                          "run `learnloop features materialize` first")
    online, cpu = _time(serving_read, batches, repeats)
    reference = reference_repeats or max(repeats // 10, 20)  # the slow paths: fewer runs
    feast, feast_cpu = _time(feast_read, batches, reference)
    frame, _ = _time(frame_read, batches, reference)
    return {"service": service, "online_store": store.config.online_store.type,
            "path": "serving.api.open_online_reader (read + fill; batch: read_rows + fill)",
            "online_ms": online, "online_cpu_ms": cpu, "feast_ms": feast, "feast_cpu_ms": feast_cpu,
            "online_dataframe_ms": frame, "load_average_1m": round(os.getloadavg()[0], 2)}


def _time(read: Callable[[list[dict]], None], batches: dict[int, list[list[dict]]], repeats: int
          ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    out: dict[str, dict[str, float]] = {}
    cpu_out: dict[str, dict[str, float]] = {}
    for size, pool in batches.items():
        for batch in pool[:5]:  # warm-up: statement cache, SQLite pages, code paths
            read(batch)
        runs = repeats if size == 1 else max(repeats // 10, min(repeats, 20))
        wall, cpu = np.empty(runs), np.empty(runs)
        gc.collect()
        for i in range(runs):
            batch = pool[i % len(pool)]
            started, started_cpu = time.perf_counter(), time.thread_time()
            read(batch)
            cpu[i] = (time.thread_time() - started_cpu) * 1000.0
            wall[i] = (time.perf_counter() - started) * 1000.0
        out[str(size)] = {"p50": round(float(np.percentile(wall, 50)), 3),
                          "p99": round(float(np.percentile(wall, 99)), 3), "n": runs}
        cpu_out[str(size)] = {"p50": round(float(np.percentile(cpu, 50)), 3),
                              "p99": round(float(np.percentile(cpu, 99)), 3)}
    return out, cpu_out
