"""``learnloop bench recommend``: latency of one served recommendation list for a course of a given size.

Times :func:`recommender._recommend.service.recommend` — what BentoML's ``/recommend`` runs per request after
parsing the body into the platform's frames — in the treatment arm with a learned ranker scored by ONNX Runtime,
on a synthetic course shaped like OULAD BBB 2013B (1,537 learners × 315 items, items released through the
course in build order, learners following at their own lag, dropping out, re-opening items). The ranker is a
small model fitted on the synthetic course itself (its quality does not matter here, its graph size about does).

Reported: warm requests (course-level work cached, a different learner each time), the first request of a course
input (cache miss: builds the click matrix and the course state), the uncached path (course state + one learner's
features per request) and ``before_whole_course_features`` (every learner's features per request: serving before
the cache), ``live`` (a course in use: one new open before every request, the entry refreshed in the background)
and ``wire``: the opens' trip to the model service without the network (encode + JSON on the
platform, parse on the service), packed as the platform sends them and as JSON lists.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from recommender._recommend import learned, rankers, service
from recommender.data import Variant


def synthetic_course(*, n_learners: int = 1537, n_items: int = 315, day: int = 120, length_days: int = 240,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions ``user_id, item_id, day`` before ``day``, items ``item_id, kind``) as the platform sends them."""
    rng = np.random.default_rng(seed)
    release = np.arange(n_items) * (length_days / n_items)
    lag = rng.uniform(0, 10, size=n_learners)
    dropout = np.where(rng.random(n_learners) < 0.3, rng.uniform(0, length_days, size=n_learners), np.inf)
    opens = rng.random((n_learners, n_items)) < 0.7
    first = np.floor(release[None, :] + lag[:, None] + rng.geometric(0.3, size=(n_learners, n_items)))
    opens &= first < dropout[:, None]
    learner, item = np.nonzero(opens)
    days = first[learner, item]
    repeats = rng.poisson(1.5, size=len(learner))  # re-opens on later days
    again = np.repeat(np.arange(len(learner)), repeats)
    learner = np.concatenate([learner, learner[again]])
    item = np.concatenate([item, item[again]])
    days = np.concatenate([days, days[again] + rng.integers(1, 30, size=len(again))])
    keep = days < day
    kinds = np.asarray(["resource", "oucontent", "quiz", "url", "forumng"])
    interactions = pd.DataFrame({"user_id": np.char.add("u", learner[keep].astype(str)),
                                 "item_id": np.char.add("i", item[keep].astype(str)),
                                 "day": days[keep].astype(int)})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "kind": kinds[np.arange(n_items) % 5]})
    return interactions, items


def _ranker(interactions: pd.DataFrame, items: pd.DataFrame, day: int):
    """A small ranker fitted on the synthetic course's earlier weeks, exported to ONNX (parity checked)."""
    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs

    entry = service.course_entry(course_id="bench", interactions=interactions, items=items, day=day, cache=None)
    course = entry.course
    rng = np.random.default_rng(0)
    parts = [r for r in (learned.rows_at(course, d, rng=rng) for d in range(14, day - 7, 14)) if r is not None]
    x, y, w = (np.concatenate([p[i] for p in parts]) for i in range(3))
    model = learned.fit(x, y, w)
    frame = pd.DataFrame(x[:2000].astype(np.float32), columns=list(rankers.FEATURES))
    schema = ModelSchema(inputs=infer_inputs(frame, rankers.FEATURES))
    export = export_sklearn_classifier(model, frame, schema)
    return service.OnnxRanker(export.onnx_bytes, export.schema, "bench")


def _percentiles(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p99_ms": round(float(np.percentile(values, 99)), 2)}


def bench_recommend(*, n_learners: int = 1537, n_items: int = 315, day: int = 120, requests: int = 200,
                    uncached_requests: int = 20, seed: int = 0) -> dict:
    """Latency of one treatment-arm list (see the module doc); keys ``p50_ms``/``p99_ms`` are the warm path."""
    interactions, items = synthetic_course(n_learners=n_learners, n_items=n_items, day=day, seed=seed)
    # The served handler ranks from the wire's frame, whose ids are categorical (serving.data.Opens.frame).
    interactions = interactions.astype({"user_id": "category", "item_id": "category"})
    ranker = _ranker(interactions, items, day)
    learners = np.asarray(sorted(set(interactions["user_id"])))
    rng = np.random.default_rng(seed + 1)
    cache = service.CourseCache(ttl_seconds=3600.0)

    def once(user: str, use_cache: bool) -> float:
        started = time.perf_counter()
        served = service.recommend(user_id=user, course_id="bench", interactions=interactions, items=items, day=day,
                                   limit=10, variant=Variant.treatment, experiment="bench", ranker=ranker,
                                   cache=cache if use_cache else None)
        elapsed = time.perf_counter() - started
        assert served.model_version == "bench" and served.items, "the bench must time the ranker's path"
        return elapsed

    def whole_course(user: str) -> float:  # what serving did before the cache: every learner's features per request
        started = time.perf_counter()
        entry = service.course_entry(course_id="bench", interactions=interactions, items=items, day=day, cache=None)
        ranker.score(rankers.features(entry.course, day)[entry.learner_row[user]])
        return time.perf_counter() - started

    before = [whole_course(str(u)) for u in rng.choice(learners, size=uncached_requests)]
    uncached = [once(str(u), False) for u in rng.choice(learners, size=uncached_requests)]
    cold = once(str(learners[0]), True)
    warm = [once(str(u), True) for u in rng.choice(learners, size=requests)]
    # New activity: one more open is a new input; the next request is answered from the entry with the learner's
    # own opens applied (before the background refresh, every such request rebuilt the course: `uncached`).
    interactions = pd.concat([interactions, pd.DataFrame({"user_id": [learners[1]], "item_id": [interactions["item_id"].iloc[0]],
                                                          "day": [day - 1]}).astype(interactions.dtypes)],
                             ignore_index=True)
    after_new_event = once(str(learners[1]), True)
    course = service.course_entry(course_id="bench", interactions=interactions, items=items, day=day, cache=cache)
    live = _live(interactions, items, day, ranker, learners, requests=requests, seed=seed)
    wire = _wire(interactions, repeats=max(5, min(30, requests // 10)))
    return {
        **_percentiles(warm),
        "n_items": int(course.course.first_click.shape[1]),
        "n_learners": int(course.course.first_click.shape[0]),
        "n_interactions": int(len(interactions)),
        "requests": requests,
        "cold_ms": round(cold * 1000, 2),
        "after_new_event_ms": round(after_new_event * 1000, 2),
        "uncached": _percentiles(uncached) | {"requests": uncached_requests},
        "before_whole_course_features": _percentiles(before) | {"requests": uncached_requests},
        "cache": {"hits": cache.hits, "misses": cache.misses},
        "live": live,
        "wire": wire,
    }


def _live(interactions: pd.DataFrame, items: pd.DataFrame, day: int, ranker, learners: np.ndarray, *,
          requests: int, seed: int, refresh_seconds: float = 2.0) -> dict:
    """A course in use: before every request one more open arrives (a random learner, a random item), so no two
    requests carry the same opens. The first request builds the course; later ones are answered from the entry
    with the learner's own opens applied while it is rebuilt in the background every ``refresh_seconds`` (the
    served default is ``service.COURSE_REFRESH_SECONDS``; shorter here so the timed requests share the CPU with
    several rebuilds)."""
    rng = np.random.default_rng(seed + 2)
    cache = service.CourseCache(ttl_seconds=3600.0, refresh_seconds=refresh_seconds)
    item_ids = interactions["item_id"].cat.categories.to_numpy()  # opened before: the frame's categories
    samples = []
    started_all = time.perf_counter()
    for k in range(requests + 1):
        user = str(rng.choice(learners))
        opened = pd.DataFrame({"user_id": [user], "item_id": [rng.choice(item_ids)], "day": [day - 1]})
        interactions = pd.concat([interactions, opened.astype(interactions.dtypes)], ignore_index=True)
        started = time.perf_counter()
        service.recommend(user_id=user, course_id="bench", interactions=interactions, items=items, day=day, limit=10,
                          variant=Variant.treatment, experiment="bench", ranker=ranker, cache=cache)
        if k:  # the first request builds the course in line (cold_ms above)
            samples.append(time.perf_counter() - started)
    elapsed = time.perf_counter() - started_all
    cache.wait_for_refreshes()
    return {**_percentiles(samples), "requests": requests, "refresh_seconds": refresh_seconds,
            "seconds": round(elapsed, 1), "stale": cache.stale, "refreshes": cache.refreshes,
            "misses": cache.misses}


def _wire(interactions: pd.DataFrame, *, repeats: int) -> dict:
    """The opens' trip to the model service without the network: the platform's encoding and JSON, then the
    service's parse into the frame it ranks from, packed (what the platform sends) and as JSON lists."""
    import json

    from serving.api import encode_opens
    from serving.data import Opens

    out = {}
    for name, packed in (("packed", True), ("lists", False)):
        encode, parse, size = [], [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            body = json.dumps(encode_opens(interactions, packed=packed))
            encoded = time.perf_counter()
            Opens.model_validate_json(body).frame()
            encode.append(encoded - started)
            parse.append(time.perf_counter() - encoded)
            size = len(body)
        out[name] = {"encode": _percentiles(encode), "parse": _percentiles(parse), "bytes": size}
    return out
