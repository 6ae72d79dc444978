"""Event log → offline sources: learner activity events (``lms.analytics.events``, ``learnloop.events`` envelope)
become click rows, garbage goes to a quarantine with a reason, and the activity-derived sources of the
presentations touched are recomputed.

Incremental and idempotent by event id: accepted event ids form a ledger (``<feast_dir>/events/clicks.parquet``);
an event already in it is skipped (counted ``already_ingested``), so replaying a stream adds nothing twice. So is a
second copy of an event within one batch (a redelivery: the relay publishes an event again when it stopped between
the broker's ack and marking the row, and JetStream drops the copy only within its 2-minute duplicate window); a
copy that differs from the first is quarantined instead. So are the ``resource_click`` events of the OULAD import
(``source_service`` ``oulad_import``): they are studentVle rows.

An activity event counts as clicks on a content item: ``user_id`` is the student (OULAD ``id_student``),
``course_id`` the presentation key (``AAA-2013J``), ``payload.content_id`` the item (``id_site``),
``payload.clicks`` the count (default 1), ``timestamp`` when it happened (mapped to the presentation day).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from learnloop.events import Event, Topic


class QuarantineReason(StrEnum):
    malformed_envelope = "malformed_envelope"
    malformed_timestamp = "malformed_timestamp"
    not_activity = "not_activity"
    unknown_student = "unknown_student"
    unknown_content = "unknown_content"
    invalid_clicks = "invalid_clicks"
    negative_clicks = "negative_clicks"
    duplicate_event_id = "duplicate_event_id"


OULAD_IMPORT_SOURCE = "oulad_import"  # source_service of the events `learnloop data import oulad` writes

FUTURE_SLACK = pd.Timedelta(days=1)  # clock skew tolerated between the event's producer and this ingestion

CLICK_COLUMNS = ["event_id", "id_student", "course", "id_site", "date", "sum_click", "event_timestamp",
                 "ingested_at"]


@dataclass
class IngestReport:
    accepted: int = 0
    already_ingested: int = 0
    quarantined: Counter = field(default_factory=Counter)
    courses: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "already_ingested": self.already_ingested,
                "quarantined": dict(self.quarantined), "quarantined_total": int(sum(self.quarantined.values())),
                "courses": self.courses}


def events_dir(feast_dir: Path) -> Path:
    return Path(feast_dir) / "events"


def read_clicks(feast_dir: Path) -> pd.DataFrame:
    path = events_dir(feast_dir) / "clicks.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=CLICK_COLUMNS)


def read_quarantine(feast_dir: Path) -> pd.DataFrame:
    path = events_dir(feast_dir) / "quarantine.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame(
        columns=["event_id", "reason", "detail", "raw", "quarantined_at"])


def validate_events(raw_events: list[dict | str | Event], *, registrations: pd.DataFrame,
                    sites: pd.DataFrame, seen_ids: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, IngestReport]:
    """Split raw envelopes into accepted click rows and quarantined rows (with reasons)."""
    report = IngestReport()
    known = set(registrations["student_course"])
    starts = registrations.drop_duplicates("course").set_index("course")["course_start"]
    site_course = sites.set_index("id_site")["course"].to_dict() if len(sites) else {}
    now = pd.Timestamp(datetime.now(UTC))
    accepted, quarantined = [], []
    batch_copies: dict[str, dict] = {}  # event id → the first copy of it in this batch

    def reject(raw: Any, reason: QuarantineReason, detail: str, event_id: str | None = None) -> None:
        report.quarantined[reason.value] += 1
        text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
        quarantined.append({"event_id": event_id, "reason": reason.value, "detail": detail[:500], "raw": text,
                            "quarantined_at": now})

    for raw in raw_events:
        try:
            event = raw if isinstance(raw, Event) else (
                Event.model_validate_json(raw) if isinstance(raw, str) else Event.model_validate(raw))
        except ValidationError as exc:
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            reason = (QuarantineReason.malformed_timestamp if "timestamp" in bad
                      else QuarantineReason.malformed_envelope)
            raw_id = raw.get("event_id") if isinstance(raw, dict) else None
            reject(raw, reason, str(exc).splitlines()[0], str(raw_id) if raw_id else None)
            continue
        event_id = str(event.event_id)
        raw_out = event.model_dump(mode="json")
        if event_id in seen_ids or event.source_service == OULAD_IMPORT_SOURCE:
            # An OULAD-import click is a studentVle row the offline build already reads: replaying the platform's
            # analytics stream must not count it twice.
            report.already_ingested += 1
            continue
        first = batch_copies.setdefault(event_id, raw_out)
        if first is not raw_out:
            if first == raw_out:  # a redelivered copy: the first one was dealt with
                report.already_ingested += 1
            else:
                reject(raw_out, QuarantineReason.duplicate_event_id,
                       "event id seen earlier in this batch with other content", event_id)
            continue
        if event.topic is not Topic.analytics:
            reject(raw_out, QuarantineReason.not_activity, f"{event.event_type} is not learner activity", event_id)
            continue
        key = f"{event.user_id}:{event.course_id}"
        if event.user_id is None or event.course_id is None or key not in known:
            reject(raw_out, QuarantineReason.unknown_student, f"no registration {key}", event_id)
            continue
        clicks = event.payload.get("clicks", 1)
        if isinstance(clicks, bool) or not isinstance(clicks, int | float) or clicks != int(clicks):
            reject(raw_out, QuarantineReason.invalid_clicks, f"clicks={clicks!r} is not a whole number", event_id)
            continue
        if clicks < 0:
            reject(raw_out, QuarantineReason.negative_clicks, f"clicks={clicks}", event_id)
            continue
        try:
            site = int(event.payload.get("content_id"))
        except (TypeError, ValueError):
            site = None
        if site is None or site_course.get(site) != event.course_id:
            reject(raw_out, QuarantineReason.unknown_content,
                   f"content {event.payload.get('content_id')!r} is not an item of {event.course_id}", event_id)
            continue
        stamp = pd.Timestamp(event.timestamp)
        stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
        if stamp > now + FUTURE_SLACK:
            # The platform stored such times before it refused them (e.g. 2300, beyond what pandas holds in ns)
            reject(raw_out, QuarantineReason.malformed_timestamp,
                   f"timestamp {event.timestamp.isoformat()} is after the ingestion time {now.isoformat()}", event_id)
            continue
        day = int(np.floor((stamp - starts[event.course_id]) / pd.Timedelta(days=1)))
        accepted.append({"event_id": event_id, "id_student": int(str(event.user_id)), "course": event.course_id,
                         "id_site": site, "date": day, "sum_click": int(clicks), "event_timestamp": stamp,
                         "ingested_at": now})
    report.accepted = len(accepted)
    report.courses = sorted({row["course"] for row in accepted})
    return (pd.DataFrame(accepted, columns=CLICK_COLUMNS),
            pd.DataFrame(quarantined, columns=["event_id", "reason", "detail", "raw", "quarantined_at"]), report)


def append_parquet(frame: pd.DataFrame, path: Path) -> None:
    if not len(frame):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        frame = pd.concat([pd.read_parquet(path), frame], ignore_index=True)
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
