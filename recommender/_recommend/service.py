"""Serving one recommendation list from a course's interactions (the online twin of the OULAD evaluation)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput
from recommender._recommend import rankers
from recommender._recommend.clicks import CourseClicks, course_clicks
from recommender.data import RankerInputs, Recommendation, RecommendationList, Variant

_REQUIRED_INTERACTIONS = ("user_id", "item_id", "day")

# A treatment list carries the ranker's inputs for this many of its candidates (the items the learner has not
# opened), drawn uniformly, for the prediction log and drift monitoring. Not the listed items: the top of a ranking
# is by construction unlike the ranker's training rows (every not-yet-opened item), so it would always "drift";
# a uniform sample of what was scored is comparable with them. 8 rows cost ~17 µs here (the learner's feature matrix
# is already computed) and ~0.1 ms of the log writer's thread; 50 logged lists already give 400 rows to compare.
LOGGED_CANDIDATES = 8
_SAMPLER = np.random.default_rng()


# Course-level work (click matrix, item trends/hazards/similarities, learner-learner norms, course order) is cached
# per course, day and catalog (the items' fingerprint). Each entry remembers the fingerprint of the opens it was built
# from. A request with the same opens is a hit. A request with other opens (live activity: every new open is one) is
# answered from the entry with the learner's own opens of the request applied (an item they just opened is never
# recommended), and once the entry is COURSE_REFRESH_SECONDS old it is rebuilt from that request's opens in the
# background, one rebuild per course at a time: the course-level parts lag the newest opens by at most that interval
# plus a rebuild (about a second for a BBB-size course), instead of every request after an open paying the rebuild.
# Entries are not served after COURSE_CACHE_TTL_SECONDS (the next request rebuilds in line) and at most
# COURSE_CACHE_SIZE courses are kept (least recently used first out).
COURSE_CACHE_TTL_SECONDS = 300.0
COURSE_REFRESH_SECONDS = 15.0
COURSE_CACHE_SIZE = 16

log = logging.getLogger(__name__)


@dataclass
class _CourseEntry:
    created: float
    item_ids: list[str]
    item_pos: dict[str, int]  # item id → column of the click matrix
    learner_row: dict[str, int]  # user id → row of the click matrix (learners with opens before the day)
    course: CourseClicks
    popularity: np.ndarray  # popularity within course and week per item (control, cold start, no model)
    planned_later: np.ndarray  # item planned for a later week than the day's (held back by the popularity rule)
    opens_key: str = ""  # fingerprint of the opens the entry was built from
    state: rankers.CourseState | None = None  # built on the first treatment request
    state_lock: threading.Lock = field(default_factory=threading.Lock)

    def course_state(self, day: int) -> rankers.CourseState:
        with self.state_lock:
            if self.state is None:
                self.state = rankers.course_state(self.course, day)
            return self.state


class CourseCache:
    """Thread-safe LRU of course entries, refreshed in the background under live activity (see the comment above).

    ``hits``: requests whose opens the entry was built from; ``stale``: answered from an entry built from other opens
    (the learner's own applied); ``misses``: built in line; ``refreshes``: background rebuilds finished."""

    def __init__(self, *, ttl_seconds: float = COURSE_CACHE_TTL_SECONDS,
                 refresh_seconds: float = COURSE_REFRESH_SECONDS, size: int = COURSE_CACHE_SIZE,
                 clock=time.monotonic) -> None:
        self.ttl_seconds, self.refresh_seconds, self.size, self._clock = ttl_seconds, refresh_seconds, size, clock
        self._entries: OrderedDict[tuple, _CourseEntry] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple, threading.Lock] = {}
        self._refreshing: dict[tuple, threading.Thread] = {}
        self.hits = self.misses = self.stale = self.refreshes = 0

    def clear(self) -> None:
        self.wait_for_refreshes()
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = self.stale = self.refreshes = 0

    def wait_for_refreshes(self, timeout: float | None = None) -> None:
        """Block until the background rebuilds running now have finished (tests and benchmarks)."""
        with self._lock:
            threads = list(self._refreshing.values())
        for thread in threads:
            thread.join(timeout)

    def get(self, key: tuple, opens_key: str, build) -> tuple[_CourseEntry, bool]:
        """``(entry, exact)``: ``exact`` when the entry was built from the opens ``opens_key`` names. ``build()``
        makes an entry from the request's input (called in line when no entry may answer, else perhaps in the
        background)."""
        entry = self._answer(key, opens_key, build)
        if entry is not None:
            return entry, entry.opens_key == opens_key
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # concurrent first requests of one course build it once
            entry = self._answer(key, opens_key, build)
            if entry is not None:
                return entry, entry.opens_key == opens_key
            with self._lock:
                self.misses += 1
            entry = self._store(key, build())
            with self._lock:
                self._building.pop(key, None)
            return entry, True

    def _answer(self, key: tuple, opens_key: str, build) -> _CourseEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            age = self._clock() - entry.created
            if age > self.ttl_seconds:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            if entry.opens_key == opens_key:
                self.hits += 1
                return entry
            self.stale += 1
            if age >= self.refresh_seconds and key not in self._refreshing:
                thread = threading.Thread(target=self._refresh, args=(key, entry, build), daemon=True,
                                          name=f"course-refresh-{key[0]}")
                self._refreshing[key] = thread
                thread.start()
            return entry

    def _refresh(self, key: tuple, old: _CourseEntry, build) -> None:
        started = self._clock()
        try:
            entry = build()
            if old.state is not None:  # the course has treatment traffic: have its ranker state ready too
                entry.course_state(int(key[1]))
            self._store(key, entry, unless_newer_than=started)
            with self._lock:
                self.refreshes += 1
        except Exception:  # the stale entry keeps answering; a later request tries again
            log.exception("refreshing the course state of %s failed", key[0])
        finally:
            with self._lock:
                self._refreshing.pop(key, None)

    def _store(self, key: tuple, entry: _CourseEntry, unless_newer_than: float | None = None) -> _CourseEntry:
        """Keep ``entry`` for ``key``; a refresh (``unless_newer_than``: when it started) never replaces an entry
        built after it started (e.g. in line, once the old one expired), which holds newer opens."""
        with self._lock:
            current = self._entries.get(key)
            if unless_newer_than is not None and current is not None and current.created > unless_newer_than:
                return current
            entry.created = self._clock()
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return entry


COURSE_CACHE = CourseCache()


def _fingerprint(frame: pd.DataFrame, columns: list[str]) -> str:
    """Content hash of ``frame[columns]`` (row order included: reordered input is another input, never a wrong hit).

    A categorical column (what the model service's wire and the platform's opens cache give) hashes its codes and
    categories: well under a millisecond for 330k opens. Other columns join their values as text, ~3x faster than
    ``pd.util.hash_pandas_object`` on string ids (6 ms per column of 330k opens here)."""
    digest = hashlib.blake2b(str(len(frame)).encode(), digest_size=16)
    for column in columns:
        digest.update(b"\x01" + column.encode() + b"\x01")
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            codes = series.cat.codes.to_numpy()
            digest.update(b"categorical" + codes.dtype.str.encode() + codes.tobytes())
            series = pd.Series(series.cat.categories)
        values = series.to_numpy()
        if values.dtype.kind in "biuf":
            digest.update(values.dtype.str.encode() + values.tobytes())
        else:
            listed = values.tolist()
            try:
                text = "\x00".join(listed)
            except TypeError:  # not all strings (e.g. integer ids in an object column)
                text = "\x00".join(map(repr, listed))
            digest.update(text.encode())
    return digest.hexdigest()


def _build_course(course_id: str, interactions: pd.DataFrame, items: pd.DataFrame, day: int,
                  opens_key: str = "") -> _CourseEntry:
    # Identifiers become positions; the click matrix code is shared with the offline evaluation.
    item_ids = items["item_id"].astype(str).tolist()
    item_pos = {item_id: i for i, item_id in enumerate(item_ids)}
    frame = interactions.assign(
        item_id=interactions["item_id"].astype(str), user_id=interactions["user_id"].astype(str)
    )
    frame = frame[frame["item_id"].isin(item_pos) & (frame["day"] < day)]
    learners = sorted(set(frame["user_id"]))
    learner_pos = {learner: i for i, learner in enumerate(learners)}
    clicks = pd.DataFrame(
        {
            "id_student": frame["user_id"].map(learner_pos).to_numpy(dtype=np.int64),
            "id_site": frame["item_id"].map(item_pos).to_numpy(dtype=np.int64),
            "date": frame["day"].to_numpy(dtype=float),
        }
    )
    item_frame = pd.DataFrame(
        {
            "id_site": np.arange(len(item_ids)),
            "activity_type": items["kind"].astype(str).to_numpy() if "kind" in items else "page",
            "week_from": items["week_from"].to_numpy() if "week_from" in items else np.nan,
        }
    )
    kinds = tuple(sorted(item_frame["activity_type"].unique()))
    course = course_clicks(clicks, item_frame, course_id=course_id, length_days=day + 1, kinds=kinds)
    # Every learner with an open has a row (course.learners == 0 … len(learners) - 1); column i is item_ids[i].
    with np.errstate(invalid="ignore"):
        # `day` is the first day whose opens are not counted (the platform passes today + 1): today is day - 1.
        planned_later = course.week_from > (day - 1) // rankers.WEEK_DAYS  # NaN (no plan) compares False
    return _CourseEntry(created=time.monotonic(), item_ids=item_ids, item_pos=item_pos, learner_row=learner_pos,
                        course=course, popularity=np.asarray(rankers.popularity_recent(course, day)[0]),
                        planned_later=planned_later, opens_key=opens_key)


def _course_entry(course_id: str, interactions: pd.DataFrame, items: pd.DataFrame, day: int,
                  cache: CourseCache | None) -> tuple[_CourseEntry, bool]:
    if cache is None:
        return _build_course(course_id, interactions, items, day), True
    item_columns = [c for c in ("item_id", "kind", "week_from") if c in items.columns]
    key = (course_id, int(day), _fingerprint(items, item_columns))
    opens_key = _fingerprint(interactions, list(_REQUIRED_INTERACTIONS))
    return cache.get(key, opens_key, lambda: _build_course(course_id, interactions, items, day, opens_key))


def course_entry(*, course_id: str, interactions: pd.DataFrame, items: pd.DataFrame, day: int,
                 cache: CourseCache | None = COURSE_CACHE) -> _CourseEntry:
    """The course-level inputs of a recommendation: from the cache when it holds the course for this day and catalog
    (built from these opens, or from earlier ones while a refresh is due or running; see the comment above)."""
    return _course_entry(course_id, interactions, items, day, cache)[0]


def _opened_now(interactions: pd.DataFrame, user_id: str, entry: _CourseEntry, day: int) -> np.ndarray:
    """Columns of ``entry``'s matrix the learner opened before ``day`` according to this request's opens."""
    users = interactions["user_id"]
    mine = interactions.loc[(users == user_id).to_numpy() & (interactions["day"] < day).to_numpy(), "item_id"]
    columns = [entry.item_pos.get(str(item)) for item in pd.unique(mine.to_numpy())]
    opened = np.zeros(len(entry.item_ids), dtype=bool)
    opened[[c for c in columns if c is not None]] = True
    return opened


def recommend(
    *,
    user_id: str,
    course_id: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    day: int,
    limit: int,
    variant: Variant,
    experiment: str,
    ranker=None,
    ranker_unavailable: str | None = None,
    cache: CourseCache | None = COURSE_CACHE,
) -> RecommendationList:
    """``ranker``: the champion :class:`OnnxRanker` (None: treatment falls back to popularity within course and
    week, with ``ranker_unavailable`` as the reason). ``cache``: where course-level work is reused across requests
    (None: computed for this request only). With the cache, a request answered while the course's entry is being
    refreshed scores the learner from the entry (course-level parts and the learner's history up to
    ``COURSE_REFRESH_SECONDS`` plus a rebuild old) and never lists an item this request's opens say they opened."""
    missing = [c for c in _REQUIRED_INTERACTIONS if c not in interactions.columns]
    if missing or "item_id" not in items.columns:
        raise InvalidInput(
            f"interactions need columns {list(_REQUIRED_INTERACTIONS)} (missing {missing}) and items need item_id"
        )
    if items.empty:
        return RecommendationList(user_id, course_id, experiment, variant, (), cold_start=True)
    entry, exact = _course_entry(course_id, interactions, items, day, cache)
    course, item_ids = entry.course, entry.item_ids
    row = entry.learner_row.get(str(user_id))
    opened = None if exact else _opened_now(interactions, str(user_id), entry, day)
    # A learner whose first opens came after the entry was built has no row yet: popularity, without those items.
    cold_start = row is None and (opened is None or not opened.any())
    model_version = fallback = feats = None
    if row is None or variant is Variant.control or ranker is None:
        scores = entry.popularity
        seen = np.zeros(len(item_ids), dtype=bool) if row is None else course.first_click[row] < day
        reason = "popular in this course this week"
        if not cold_start and variant is Variant.treatment:
            fallback = ranker_unavailable or "no recommender model registered"
            if row is None and ranker is not None:
                fallback = "the learner's first opens are newer than the course state (refreshing)"
    else:
        feats = rankers.learner_features(entry.course_state(day), [row])[0]
        scores = ranker.score(feats)
        seen = course.first_click[row] < day
        reason = f"learnloop ranker v{ranker.version}"
        model_version = ranker.version
    if opened is not None:
        seen = seen | opened
    # The course plan first, in both arms: items planned for a later week go after the rest (the ranker has seen
    # few planned items in OULAD, so the plan is a rule, not only its `planned_week_gap` feature); scores order
    # within each group.
    ranked = np.lexsort((-np.asarray(scores, dtype=float), entry.planned_later))
    order = [i for i in ranked if not seen[i]][:limit]
    picked = tuple(Recommendation(item_ids[course.items[i]], float(scores[i]), reason) for i in order)
    inputs = None if feats is None else _logged_inputs(feats, scores, ~seen, item_ids, course.items)
    return RecommendationList(user_id, course_id, experiment, variant, picked, cold_start=cold_start,
                              model_version=model_version, fallback=fallback, ranker_inputs=inputs)


def _logged_inputs(feats: np.ndarray, scores, candidate: np.ndarray, item_ids: list[str],
                   column_items: np.ndarray) -> RankerInputs | None:
    """The ranker's rows and scores of up to ``LOGGED_CANDIDATES`` candidates drawn uniformly (see above);
    ``column_items[i]`` is the position in ``item_ids`` of the matrix column ``i``."""
    pool = np.flatnonzero(candidate)
    n_candidates = len(pool)
    if not n_candidates:
        return None
    if n_candidates > LOGGED_CANDIDATES:
        pool = np.sort(_SAMPLER.choice(pool, size=LOGGED_CANDIDATES, replace=False))
    return RankerInputs(columns=rankers.FEATURES, item_ids=tuple(item_ids[column_items[i]] for i in pool),
                        rows=np.asarray(feats[pool], dtype=np.float32),
                        scores=np.asarray(scores, dtype=np.float64)[pool], candidates=n_candidates)


class OnnxRanker:
    """The registered learned ranker, scored with ONNX Runtime (torch- and sklearn-free)."""

    def __init__(self, onnx_bytes: bytes, schema, version: str) -> None:
        from models.api import OnnxClassifier

        if schema.feature_names != list(rankers.FEATURES):
            raise InvalidInput(
                f"recommender model v{version} expects features {schema.feature_names}, this code computes "
                f"{list(rankers.FEATURES)}; retrain with `learnloop train recommender`"
            )
        self.version = str(version)
        self.n_inputs = len(schema.feature_names)
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._model = OnnxClassifier(onnx_bytes, schema)

    def score(self, feats: np.ndarray) -> np.ndarray:
        """P(first open within 7 days) per row of ``feats`` (``n × len(FEATURES)``)."""
        frame = pd.DataFrame(np.asarray(feats, dtype=np.float32), columns=list(rankers.FEATURES))
        return self._model.predict_proba(frame)
