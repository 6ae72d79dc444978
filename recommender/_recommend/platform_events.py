"""The platform's events as training data: content opens → interactions, served lists + opens → feedback.

Input: ``learnloop.events`` envelopes as the platform emits them (outbox / ``lms.analytics.events``): activity
events whose ``payload.content_id`` names an item (the same open types the platform's recommendations route
counts), and ``recommendations.served`` events carrying the experiment, arm and item ids of each served list.

* interactions — one row per (course, user, item, day) open; ``day`` counts from the course's start as the
  platform counts it when serving (:func:`course_starts`; the course's first open when the export holds no
  ``course.created`` event). Every open is a training label for the next run.
* feedback — an open of an item that was in the learner's latest served list of that course (served before the
  open) is ``clicked``; a ``video_complete`` of such an item is ``completed``. Attributed to the list's arm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from learnloop.errors import InvalidInput
from learnloop.events import Event, Topic
from recommender._recommend.clicks import CourseClicks, course_clicks

# Topics whose events training reads: course starts, content kinds and plans, opens and served lists.
TRAINING_TOPICS = (Topic.courses, Topic.content, Topic.analytics)
OPEN_TYPES = ("content_view", "resource_click", "page_view", "video_play", "video_complete")
COMPLETE_TYPES = ("video_complete",)
SERVED_TYPE = "recommendations.served"
INTERACTION_COLUMNS = ["course_id", "user_id", "item_id", "day", "timestamp", "event_type"]


def parse_events(events: Iterable) -> list[Event]:
    """Envelopes from JSON lines, dicts or :class:`Event` objects (these pass through), each event id once (the first
    copy is kept): parse once, then hand the list to every function here.

    An event can reach an export twice: the outbox relay publishes it again when it stopped between the broker's
    ack and marking the row, and JetStream drops the copy only within its duplicate window (2 min); ``--events``
    with ``--platform`` may also hold the same event. Counted twice, it would double an open and an arm's served
    lists."""
    out, seen = [], set()
    for raw in events:
        if isinstance(raw, Event):
            event = raw
        else:
            try:
                event = Event.model_validate_json(raw) if isinstance(raw, str | bytes) else Event.model_validate(raw)
            except ValueError as exc:
                raise InvalidInput(f"not a learnloop event envelope: {str(raw)[:120]}") from exc
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


PLATFORM_COURSE_PREFIX = "platform-"  # training's id of a platform course (serving names it by the course id alone)


def from_platform(settings, *, batch: int = 20_000, progress=None) -> list[Event]:
    """The platform database's own events for training (what ``learnloop train recommender --platform`` reads):
    the topics in :data:`TRAINING_TOPICS`, each in outbox order. Imported activity (``payload.import``: OULAD clicks,
    which training reads from the data set itself) is left out in the query; imported courses and content stay, so
    live opens of an imported course keep its start, kinds and plan."""
    from platform_api import api as platform

    out: list[Event] = []
    with platform.open_session(settings, migrate_first=False) as session:
        for topic in TRAINING_TOPICS:
            after = 0
            while True:
                rows = platform.read_events(session=session, topic=topic, after_id=after, limit=batch,
                                            imported=topic is not Topic.analytics)
                if not rows:
                    break
                after = rows[-1][0]
                out += [event for _, event in rows]
                if progress is not None:
                    progress(f"{len(out):,} platform events read")
    return out


def _utc(value: datetime) -> datetime:
    # One tzinfo for every source: pandas cannot subtract a column mixing pydantic's parsed UTC and datetime.UTC
    # (events built in process alongside JSON lines).
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


FUTURE_SLACK = timedelta(days=1)  # as the platform: an open stamped later than this after now is no open


def _plausible_open(event: Event, now: datetime) -> bool:
    """False for an open stamped in the future (the platform stored some before it refused them) or beyond the
    dates pandas holds: the platform's recommendations skip it, and so does training."""
    when = _utc(event.timestamp)
    return pd.Timestamp.min.year < when.year < pd.Timestamp.max.year and when <= now + FUTURE_SLACK


def course_starts(events: Iterable) -> dict[str, datetime]:
    """Course id → when its week 1 begins, as the platform counts it when it serves: the latest ``start`` carried by
    the course's events (its ``starts_at``), else the time of its ``course.created`` event (its creation)."""
    created: dict[str, datetime] = {}
    starts: dict[str, datetime] = {}
    for event in sorted(parse_events(events), key=lambda e: _utc(e.timestamp)):
        if event.topic is not Topic.courses or not event.course_id:
            continue
        course = str(event.course_id)
        if event.event_type == "course.created":
            created[course] = _utc(event.timestamp)
        payload = event.payload or {}
        if "start" not in payload:
            continue
        if not payload["start"]:
            starts.pop(course, None)  # starts_at cleared: back to the creation
            continue
        with contextlib.suppress(ValueError):  # not a date: no start
            start = _utc(datetime.fromisoformat(str(payload["start"])))
            if pd.Timestamp.min.year < start.year < pd.Timestamp.max.year:  # else beyond what pandas holds: no start
                starts[course] = start
    return {**created, **starts}


def interactions(events: Iterable) -> pd.DataFrame:
    """Content opens as ``course_id, user_id, item_id, day, timestamp, event_type`` rows (see module doc)."""
    envelopes = parse_events(events)
    rows = []
    now = datetime.now(UTC)
    for event in envelopes:
        if event.topic is not Topic.analytics or event.event_type not in OPEN_TYPES:
            continue
        item = (event.payload or {}).get("content_id")
        if not item or not event.user_id or not event.course_id or not _plausible_open(event, now):
            continue
        rows.append((str(event.course_id), str(event.user_id), str(item), _utc(event.timestamp), event.event_type))
    frame = pd.DataFrame(rows, columns=["course_id", "user_id", "item_id", "timestamp", "event_type"])
    if frame.empty:
        return pd.DataFrame(columns=INTERACTION_COLUMNS)
    starts = course_starts(envelopes)
    first_open = frame.groupby("course_id")["timestamp"].transform("min")
    start = pd.to_datetime(frame["course_id"].map(starts), utc=True).fillna(first_open)
    # Opens before the start count on day 0, as serving counts them.
    frame["day"] = (frame["timestamp"] - start).dt.days.clip(lower=0).astype(int)
    return frame[INTERACTION_COLUMNS].sort_values(["course_id", "timestamp"]).reset_index(drop=True)


def feedback(events: Iterable) -> pd.DataFrame:
    """Opens/completions of recommended items: ``course_id, user_id, item_id, experiment, variant, outcome,
    served_event_id, timestamp`` (outcome ``clicked`` or ``completed``)."""
    envelopes = sorted(parse_events(events), key=lambda e: _utc(e.timestamp))
    latest: dict[tuple[str, str], Event] = {}
    rows = []
    now = datetime.now(UTC)
    for event in envelopes:
        key = (str(event.course_id), str(event.user_id))
        if event.event_type == SERVED_TYPE:
            latest[key] = event
            continue
        if event.topic is not Topic.analytics or event.event_type not in OPEN_TYPES or not _plausible_open(event, now):
            continue
        served = latest.get(key)
        item = str((event.payload or {}).get("content_id") or "")
        if served is None or item not in {str(i) for i in served.payload.get("items") or []}:
            continue
        outcome = "completed" if event.event_type in COMPLETE_TYPES else "clicked"
        rows.append((key[0], key[1], item, served.payload.get("experiment"), served.payload.get("variant"),
                     outcome, str(served.event_id), _utc(event.timestamp)))
    return pd.DataFrame(rows, columns=["course_id", "user_id", "item_id", "experiment", "variant", "outcome",
                                       "served_event_id", "timestamp"])


def feedback_summary(events: Iterable) -> dict:
    """Served lists and distinct clicked/completed items per arm (what the next training run logs)."""
    envelopes = parse_events(events)
    frame = feedback(envelopes)
    served: dict[str, int] = {}
    for event in envelopes:
        if event.event_type == SERVED_TYPE:
            arm = str(event.payload.get("variant") or "fallback")
            served[arm] = served.get(arm, 0) + 1
    by_variant: dict[str, dict[str, int]] = {arm: {"served": n} for arm, n in served.items()}
    if not frame.empty:
        frame = frame.assign(variant=frame["variant"].fillna("fallback").astype(str))
        for (arm, outcome), group in frame.groupby(["variant", "outcome"]):
            by_variant.setdefault(arm, {"served": 0})[outcome] = int(
                group.drop_duplicates(["served_event_id", "item_id"]).shape[0]
            )
    return {"by_variant": by_variant, "feedback_events": int(len(frame))}


def content_kinds(events: Iterable) -> dict[str, str]:
    """Item id → platform content kind (``text``, ``video`` …) from ``content.created`` / ``content.updated`` events
    (the latest wins): the kind serving reads from the catalog, so training sees the same one."""
    kinds: dict[str, str] = {}
    for event in parse_events(events):
        if event.topic is not Topic.content or event.event_type not in ("content.created", "content.updated"):
            continue
        payload = event.payload or {}
        if payload.get("content_id") and payload.get("kind"):
            kinds[str(payload["content_id"])] = str(payload["kind"])
    return kinds


def content_weeks(events: Iterable) -> dict[str, int]:
    """Item id → planned week of use, 0 = the first (the instructor's ``planned_week`` − 1, OULAD's ``week_from``),
    from ``content.created`` / ``content.updated`` events (the latest wins; a null plan clears it): the week serving
    reads from the catalog, so training sees the same one."""
    weeks: dict[str, int] = {}
    for event in parse_events(events):
        if event.topic is not Topic.content or event.event_type not in ("content.created", "content.updated"):
            continue
        payload = event.payload or {}
        if not payload.get("content_id") or "planned_week" not in payload:
            continue
        item, planned = str(payload["content_id"]), payload["planned_week"]
        if planned is None:
            weeks.pop(item, None)
        else:
            weeks[item] = int(planned) - 1
    return weeks


def courses_from_interactions(frame: pd.DataFrame, kinds: dict[str, str] | None = None,
                              weeks: dict[str, int] | None = None) -> list[CourseClicks]:
    """One :class:`CourseClicks` per platform course (items: those ever opened). ``kinds``: item id → content kind
    (:func:`content_kinds`); an item without one is a ``page`` (the ranker reads it as text, as serving does).
    ``weeks``: item id → planned week of use (:func:`content_weeks`); unknown without one, as in serving."""
    kinds, weeks = kinds or {}, weeks or {}
    out = []
    for course_id, rows in frame.groupby("course_id"):
        items = sorted(rows["item_id"].astype(str).unique())
        learners = sorted(rows["user_id"].astype(str).unique())
        item_pos = {item: i for i, item in enumerate(items)}
        learner_pos = {learner: i for i, learner in enumerate(learners)}
        clicks = pd.DataFrame({
            "id_student": rows["user_id"].astype(str).map(learner_pos).to_numpy(dtype=np.int64),
            "id_site": rows["item_id"].astype(str).map(item_pos).to_numpy(dtype=np.int64),
            "date": rows["day"].to_numpy(dtype=float),
        })
        item_kinds = [kinds.get(item, "page") for item in items]
        item_frame = pd.DataFrame({"id_site": np.arange(len(items)), "activity_type": item_kinds,
                                   "week_from": [weeks.get(item, np.nan) for item in items]})
        length = int(rows["day"].max()) + 1
        out.append(course_clicks(clicks, item_frame, course_id=f"{PLATFORM_COURSE_PREFIX}{course_id}",
                                 length_days=length, kinds=tuple(sorted(set(item_kinds)))))
    return out
