"""Public surface of the data pipelines: OULAD → point-in-time parquet sources → Feast, and the
training-set / online readers every model uses.

**Time model.** A presentation ``2013B`` starts 2013-02-01, ``2013J`` 2013-10-01 (00:00 UTC); OULAD day ``d`` is
that start + ``d`` days. "As of day t" means everything dated day ``t`` or earlier, stamped at the end of day
``t`` (start + t + 1 days). Snapshots exist for t = 0, 7, 14, … and the presentation's last day, from the day
a student registered. Marks return with a lag: CMA same day, TMA 14 days; exams are excluded from assessment
features (the exam *is* the final result). ``date_unregistration`` counts only once ≤ t; banked results are
counted apart; click features are null where the presentation has no click data (``has_click_data`` = 0).

**Label rows** (``build_risk_training_set``): one per (registration, week) for weeks in ``weeks`` —
week ``w`` has cutoff day ``7·w``, ``"end"`` the presentation's last day — for registrations with
``date_registration ≤ cutoff`` (unknown registration date: kept). ``label`` = final_result ∈ {Withdrawn, Fail}.
Rows are ordered by week (in the order given), then code_module, code_presentation, id_student.
Every presentation of the built sources (all 22 OULAD ones after ``learnloop features build``) can be asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.api import feature_names, fill_matrix, fill_missing, service_join_keys
from learnloop.errors import InvalidInput, Unavailable
from learnloop.settings import Settings, get_settings
from pipelines._offline import registrations_path, write_sources
from pipelines._snapshots import SUBGROUP_COLUMNS, build_snapshots, day_end_timestamp

if TYPE_CHECKING:
    from feast import FeatureStore

__all__ = [
    "RISK_SERVICE",
    "build_offline",
    "build_risk_training_set",
    "complete_entity_rows",
    "get_online_features",
    "historical_features",
    "import_oulad",
    "ingest_events",
    "latest_event",
    "materialize",
    "online_feature_matrix",
    "risk_label_frame",
]

RISK_SERVICE = "student_risk_v1"
DEFAULT_WEEKS: tuple[int | str, ...] = (5, 10, 15, "end")
LABEL_COLUMNS = ["student_course", "id_student", "code_module", "code_presentation", "week", "cutoff_day",
                 "active", "has_clicks", "label", *SUBGROUP_COLUMNS]


def build_offline(*, tables=None, settings: Settings | None = None,
                  presentations: Sequence[str] | None = None) -> dict[str, Any]:
    """Compute every point-in-time source from OULAD and write the parquet sources under ``feast_dir``.

    ``tables`` defaults to ``learnloop.datasets.load_oulad()``; ``presentations`` (``AAA-2013J`` keys)
    restricts the build. Returns rows per view, entity counts and timings (seconds).
    """
    settings = settings or get_settings()
    timings = {}
    started = time.perf_counter()
    if tables is None:
        from learnloop.datasets import load_oulad

        tables = load_oulad()
    timings["load_s"] = time.perf_counter() - started
    started = time.perf_counter()
    snapshots = build_snapshots(tables, presentations=set(presentations) if presentations else None)
    timings["compute_s"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = write_sources(snapshots.frames(), snapshots.registrations, settings)
    timings["write_s"] = time.perf_counter() - started
    regs = snapshots.registrations
    entities = {"student_course": int(len(regs)), "student": int(regs["id_student"].nunique()),
                "course": int(regs["course"].nunique()),
                "content_item": int(snapshots.content_item_popularity["id_site"].nunique())}
    return {"rows": rows, "entities": entities, "timings": timings}


def materialize(*, store: FeatureStore | None = None, end: datetime | None = None,
                views: Sequence[str] | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Load source rows newer than each view's last materialization into the online store (incremental).

    ``end`` defaults to the latest event in the sources (the data's "now": OULAD is historical; for live
    events it is the last event seen). A view never materialized starts at ``end − TTL``, so the online store
    then answers exactly what ``get_historical_features`` answers as of ``end`` (Feast's online read ignores
    TTL). Later runs start where the last one ended. ``progress(view, done, total)`` is called per view.
    Returns per-view intervals and seconds.

    Raises ``Unavailable`` (saying to run ``learnloop features build``) when there is nothing to materialize from:
    no feature views registered (the repo was never applied), a view's offline source missing, or sources without
    a single row. Only a store that is already up to date reports every view ``skipped``.
    """
    from features.api import get_store

    store = store or get_store()
    registered = [fv.name for fv in store.list_feature_views()]
    where = store.config.repo_path
    if not registered:
        raise Unavailable(f"the feature store in {where} has no feature views registered (it was never built); "
                          "run `learnloop features build` first")
    names = list(views) if views else registered
    unknown = sorted(set(names) - set(registered))
    if unknown:
        raise Unavailable(f"feature view(s) {', '.join(unknown)} are not registered in the feature store in {where}; "
                          "run `learnloop features build` first")
    missing = [name for name in names if not _source_file(store, name).exists()]
    if missing:
        raise Unavailable(f"the offline sources of {', '.join(missing)} are missing in {where}; run `learnloop "
                          "features build` first")
    end = end or latest_event(store, names)
    if end is None:
        raise Unavailable(f"the offline sources in {where} hold no rows to materialize; run `learnloop features "
                          "build` first")
    report: dict[str, Any] = {"end": end.isoformat()}
    for done, name in enumerate(names):
        if progress:
            progress(name, done, len(names))
        view = store.get_feature_view(name)
        start = view.most_recent_end_time
        if start is None:
            start = end - view.ttl
        if start >= end:  # already materialized up to the newest source row
            report[name] = {"skipped": True}
            continue
        started = time.perf_counter()
        store.materialize(start_date=start, end_date=end, feature_views=[name])
        report[name] = {"start": start.isoformat(), "seconds": round(time.perf_counter() - started, 3)}
    if progress:
        progress("", len(names), len(names))
    return report


def _source_file(store: FeatureStore, view: str) -> Path:
    """The parquet file behind a registered view (relative paths are under the store's repo dir)."""
    path = Path(store.get_feature_view(view).batch_source.path)
    return path if path.is_absolute() else Path(store.config.repo_path) / path


def latest_event(store: FeatureStore, views: Sequence[str]) -> datetime | None:
    """The newest ``event_timestamp`` across the sources of ``views`` (None when all are empty)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    latest = None
    for name in views:
        path = _source_file(store, name)
        if not path.exists():
            continue
        column = pq.read_table(path, columns=["event_timestamp"]).column(0)
        if len(column):
            value = pc.max(column).as_py().astimezone(UTC)
            latest = value if latest is None else max(latest, value)
    return latest


def risk_label_frame(*, weeks: Sequence[int | str] = DEFAULT_WEEKS, presentations: Sequence[str] | None = None,
                     feast_dir: Path | None = None) -> pd.DataFrame:
    """The label rows of ``build_risk_training_set`` without features (plus ``course`` and
    ``event_timestamp``, the cutoff stamp). See the module docstring for the definition and order."""
    path = registrations_path(feast_dir or get_settings().feast_dir)
    if not path.exists():
        raise Unavailable(f"{path} is missing; run `learnloop features build` first")
    regs = pd.read_parquet(path)
    if presentations is not None:
        wanted = set(presentations)
        regs = regs[regs["course"].isin(wanted) | (regs["code_module"] + regs["code_presentation"]).isin(wanted)]
    parts = []
    for week in weeks:
        label = str(week)
        if label == "end":
            cutoff = regs["course_length"].to_numpy()
        elif label.isdigit():
            cutoff = np.full(len(regs), 7 * int(label))
        else:
            raise InvalidInput(f"week {week!r} is not a number of weeks or 'end'")
        # Someone who registers after the cutoff is not a student yet at that time.
        eligible = ~(regs["date_registration"].to_numpy() > cutoff) & (cutoff <= regs["course_length"].to_numpy())
        part = regs[eligible].copy()
        part["week"] = label
        part["cutoff_day"] = cutoff[eligible].astype("int64")
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True) if parts else regs.iloc[0:0].assign(week="", cutoff_day=0)
    frame["active"] = ~(frame["date_unregistration"].to_numpy() <= frame["cutoff_day"].to_numpy())
    frame["label"] = frame["final_result"].isin(["Withdrawn", "Fail"]).astype("int64")
    frame["has_clicks"] = frame["has_clicks"].astype(bool)
    frame["event_timestamp"] = day_end_timestamp(frame["course_start"], frame["cutoff_day"])
    week_order = {str(w): i for i, w in enumerate(weeks)}
    frame["_week_order"] = frame["week"].map(week_order)
    frame = frame.sort_values(["_week_order", "code_module", "code_presentation", "id_student"], kind="stable")
    return frame[[*LABEL_COLUMNS, "course", "event_timestamp"]].reset_index(drop=True)


def build_risk_training_set(*, weeks: Sequence[int | str] = DEFAULT_WEEKS,
                            presentations: Sequence[str] | None = None, store: FeatureStore | None = None,
                            service: str = RISK_SERVICE) -> pd.DataFrame:
    """One row per (registration, week) label row with every feature of ``service`` (default
    ``student_risk_v1``; ``student_risk_v2`` adds submission behaviour and module base rates).

    Features are read through Feast ``get_historical_features`` on the FeatureService, as of each row's cutoff
    stamp, then left-merged back on a row id (the file offline store drops and reorders rows) and filled with
    ``features.api.fill_missing`` — the same function online reads use. Columns: ``student_course``,
    ``id_student``, ``code_module``, ``code_presentation``, ``week`` (str), ``cutoff_day``, ``active``,
    ``has_clicks``, ``label``, ``gender``, ``age_band``, ``disability``, ``imd_band``, then
    ``feature_names(service)`` in order. ``presentations`` accepts ``AAA-2013J`` or ``AAA2013J``.
    """
    from features.api import get_store

    store = store or get_store()
    labels = risk_label_frame(weeks=weeks, presentations=presentations, feast_dir=Path(store.config.repo_path))
    features = historical_features(store=store, service=service, entity_frame=labels)
    return features.drop(columns=["course", "event_timestamp"])


def historical_features(*, store: FeatureStore, service: str, entity_frame: pd.DataFrame) -> pd.DataFrame:
    """``entity_frame`` (join keys + ``event_timestamp``) with ``service``'s features as of each row,
    one output row per input row, in order, filled by ``fill_missing``."""
    keys = service_join_keys(service)
    missing = [k for k in [*keys, "event_timestamp"] if k not in entity_frame.columns]
    if missing:
        raise InvalidInput(f"entity frame lacks {', '.join(missing)} (needed by {service})")
    names = feature_names(service)
    request = entity_frame[[*keys, "event_timestamp"]].copy()
    request["_row_id"] = np.arange(len(request), dtype="int64")
    if len(request):
        job = store.get_historical_features(entity_df=request, features=store.get_feature_service(service))
        got = job.to_df()
        # Duplicated row ids (if any) would multiply rows: keep one, the merge below must stay 1:1.
        got = got.drop_duplicates("_row_id")[["_row_id", *names]]
    else:
        got = pd.DataFrame(columns=["_row_id", *names])
    merged = request[["_row_id"]].merge(got, on="_row_id", how="left", validate="one_to_one")
    out = entity_frame.reset_index(drop=True).copy()
    for name in names:
        out[name] = merged[name].to_numpy()
    return fill_missing(out, service)


def complete_entity_rows(service: str, entity_rows: list[dict]) -> list[dict]:
    """Add the join keys derivable from ``student_course`` (``id_student``, ``course``) that ``service`` needs."""
    keys = service_join_keys(service)
    completed = []
    for row in entity_rows:
        row = dict(row)
        if "student_course" in row and ("id_student" in keys or "course" in keys):
            student, _, course = str(row["student_course"]).partition(":")
            if not course:
                raise InvalidInput(f"student_course {row['student_course']!r} must look like '11391:AAA-2013J'")
            row.setdefault("id_student", int(student))
            row.setdefault("course", course)
        missing = [k for k in keys if k not in row]
        if missing:
            raise InvalidInput(f"entity row {row} lacks {', '.join(missing)} (needed by {service})")
        completed.append({k: row[k] for k in keys})
    return completed


def online_feature_matrix(*, service: str, entity_rows: list[dict], store: FeatureStore | None = None,
                          generic: bool = False) -> np.ndarray:
    """``service``'s latest online features for ``entity_rows`` as a float matrix (rows in order, columns
    ``feature_names(service)``), filled by ``features.api.fill_matrix`` exactly like training sets.

    Reads go through the FeatureService: by default with serving's own reader (``serving.api.
    open_online_reader``: Feast's keys and rows read straight from the SQLite or Redis online store — the path
    the model service uses); ``generic=True`` uses ``FeatureStore.get_online_features``. Both pass the same
    online/offline parity test.
    """
    from features.api import get_store

    store = store or get_store()
    rows = complete_entity_rows(service, entity_rows)
    if generic:
        response = store.get_online_features(features=store.get_feature_service(service),
                                             entity_rows=rows).to_dict()
        # None → NaN in one conversion (a DataFrame round trip per column costs milliseconds).
        matrix = np.array([response[name] for name in feature_names(service)], dtype="float64").T.copy()
    else:
        from pipelines._online import reader_for

        matrix = reader_for(store, service).read_rows(rows)
    return fill_matrix(matrix, service)


def get_online_features(*, service: str, entity_rows: list[dict], store: FeatureStore | None = None,
                        generic: bool = False) -> pd.DataFrame:
    """The latest features of ``service`` for ``entity_rows`` from the online store, filled exactly like
    training sets. One row per entity row, in order: the join keys, then ``feature_names(service)``.
    A ``student_risk_v1`` row needs only ``student_course``. (``online_feature_matrix`` skips the DataFrame.)
    """
    rows = complete_entity_rows(service, entity_rows)
    matrix = online_feature_matrix(service=service, entity_rows=rows, store=store, generic=generic)
    keys = pd.DataFrame({key: [row[key] for row in rows] for key in service_join_keys(service)})
    return pd.concat([keys, pd.DataFrame(matrix, columns=feature_names(service))], axis=1)


def ingest_events(raw_events: Sequence, *, tables=None, settings: Settings | None = None) -> dict[str, Any]:
    """Turn learner activity events (``lms.analytics.events`` envelopes: ``Event``, dicts or JSON strings)
    into the offline sources, incrementally and idempotently.

    Garbage (malformed envelope or timestamp, unknown student or content, negative or non-integer clicks,
    an event id repeated within the batch with other content) is written to
    ``<feast_dir>/events/quarantine.parquet`` with a reason and counted — never dropped silently, never counted as
    clicks. Accepted events join the ledger ``<feast_dir>/events/clicks.parquet``; replayed ids (and identical
    copies within the batch: a broker's redelivery) are skipped as ``already_ingested``. The activity, cohort and
    content-item sources of the presentations touched are recomputed (the OULAD clicks plus every accepted event)
    before the ledger records the batch, stamped with a new ``created_timestamp``. Run ``materialize`` afterwards
    for the online store.
    Returns counts: accepted, already_ingested, quarantined by reason, courses recomputed.
    """
    from pipelines._events import append_parquet, events_dir, read_clicks, validate_events

    settings = settings or get_settings()
    path = registrations_path(settings.feast_dir)
    if not path.exists():
        raise Unavailable(f"{path} is missing; run `learnloop features build` first")
    if tables is None:
        from learnloop.datasets import load_oulad

        tables = load_oulad()
    registrations = pd.read_parquet(path)
    sites = tables.vle.assign(course=tables.vle["code_module"] + "-" + tables.vle["code_presentation"])
    ledger = read_clicks(settings.feast_dir)
    accepted, quarantined, report = validate_events(list(raw_events), registrations=registrations,
                                                    sites=sites[["id_site", "course"]],
                                                    seen_ids=set(ledger["event_id"].astype(str)))
    if report.courses:
        # The features first, the ledger after. The sources are recomputed from a set of event ids, so a stop in
        # between replays these events and counts each once; the other order marked them ingested and lost them.
        ingested = accepted if ledger.empty else pd.concat([ledger, accepted], ignore_index=True)
        _recompute_activity(tables, ingested, report.courses, settings)
    folder = events_dir(settings.feast_dir)
    append_parquet(accepted, folder / "clicks.parquet")
    append_parquet(quarantined, folder / "quarantine.parquet")
    return report.as_dict()


def _recompute_activity(tables, events: pd.DataFrame, courses: list[str], settings: Settings) -> None:
    import dataclasses

    from features.api import source_path
    from pipelines._offline import source_frame

    events = events[events["course"].isin(courses)]
    module, presentation = events["course"].str.split("-", n=1, expand=True).T.to_numpy()
    extra = pd.DataFrame({"code_module": module, "code_presentation": presentation,
                          "id_student": events["id_student"].astype("int64").to_numpy(),
                          "id_site": events["id_site"].astype("int64").to_numpy(),
                          "date": events["date"].astype("int64").to_numpy(),
                          "sum_click": events["sum_click"].astype("int64").to_numpy()})
    base = tables.student_vle if tables.student_vle is not None else extra.iloc[0:0]
    with_events = dataclasses.replace(tables, student_vle=pd.concat([base, extra], ignore_index=True))
    snapshots = build_snapshots(with_events, presentations=set(courses))
    site_ids = set(snapshots.content_item_popularity["id_site"])
    keep = {
        "student_course_activity": lambda f: ~f["student_course"].str.split(":").str[1].isin(courses),
        "course_cohort": lambda f: ~f["course"].isin(courses),
        "content_item_popularity": lambda f: ~f["id_site"].isin(site_ids),
    }
    for view, keep_rows in keep.items():
        path = source_path(view, settings)
        current = pd.read_parquet(path)
        fresh = source_frame(view, getattr(snapshots, view))
        merged = pd.concat([current[keep_rows(current)], fresh], ignore_index=True)
        tmp = path.with_suffix(".parquet.tmp")
        merged.to_parquet(tmp, index=False)
        tmp.replace(path)


def import_oulad(*, tables=None, settings: Settings | None = None, presentations: Sequence[str] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Load OULAD into the platform database through ``platform_api.api.import_records``: presentations →
    courses (``metadata.presentation``), students → users (``metadata.id_student``) + enrollments
    (registration/unregistration dates, final result), VLE sites → content items, assessments/scores →
    assessments/submissions, clicks → ``resource_click`` events on ``lms.analytics.events`` (one per
    student/site/day). Idempotent (uuid5 ids): a second run inserts nothing. ``presentations`` restricts it
    (``AAA-2013J``); ``progress(step, done, total)``. Returns source rows, rows inserted and timings.
    """
    from pipelines._oulad_import import import_oulad as _import

    return _import(tables=tables, settings=settings, presentations=presentations, progress=progress)
