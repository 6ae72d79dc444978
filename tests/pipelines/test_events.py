"""Event log → offline sources: garbage is quarantined with a reason and counted, valid clicks land in the
activity features, and replaying the stream changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.api import source_path
from learnloop.events import Event
from pipelines._events import read_clicks, read_quarantine
from pipelines._snapshots import presentation_start
from pipelines.api import ingest_events


def _click(student: int, course: str, site: int, day: int, clicks=3, **changes) -> dict:
    start = presentation_start(course.split("-")[1])
    event = Event(event_type="resource_click", user_id=str(student), course_id=course,
                  timestamp=start + timedelta(days=day, hours=10), payload={"content_id": site, "clicks": clicks})
    return {**event.model_dump(mode="json"), **changes}


def _cum_clicks(settings, key: str, day: int) -> float:
    activity = pd.read_parquet(source_path("student_course_activity", settings))
    start = pd.Timestamp(presentation_start(key.split("-")[-1]))
    rows = activity[(activity["student_course"] == key)
                    & (activity["event_timestamp"] == start + pd.Timedelta(days=day + 1))]
    assert len(rows) == 1
    return float(rows["clicks_total_cum"].iloc[0])


def test_garbage_is_quarantined_with_a_reason_and_valid_clicks_count_once(oulad_offline) -> None:
    settings, tables = oulad_offline
    regs = pd.read_parquet(settings.feast_dir / "data" / "registrations.parquet")
    reg = regs[(regs["course"] == "AAA-2013J") & ~(regs["date_registration"] > 0)].iloc[0]
    key, student = reg["student_course"], int(reg["id_student"])
    site = int(tables.vle[(tables.vle["code_module"] == "AAA") & (tables.vle["code_presentation"] == "2013J")]
               ["id_site"].iloc[0])
    before, before_7 = _cum_clicks(settings, key, 14), _cum_clicks(settings, key, 7)
    good = _click(student, "AAA-2013J", site, day=10, clicks=5)
    duplicate = {**good, "payload": {**good["payload"], "clicks": 50}}  # same id, other content: not a redelivery
    events = [
        good,
        duplicate,
        _click(777777, "AAA-2013J", site, day=10),                      # unknown student
        _click(student, "AAA-2013J", site, day=10, timestamp="yesterday-ish"),  # malformed timestamp
        _click(student, "AAA-2013J", site, day=11, clicks=-40),         # negative clicks
        _click(student, "AAA-2013J", site, day=11, clicks="many"),      # not a number
        _click(student, "AAA-2013J", 1, day=11),                        # content of no such course
    ]
    report = ingest_events(events, tables=tables, settings=settings)
    assert report["accepted"] == 1
    assert report["quarantined"] == {"duplicate_event_id": 1, "unknown_student": 1, "malformed_timestamp": 1,
                                     "negative_clicks": 1, "invalid_clicks": 1, "unknown_content": 1}
    assert report["quarantined_total"] == 6
    quarantine = read_quarantine(settings.feast_dir)
    assert sorted(quarantine["reason"]) == sorted(report["quarantined"])
    assert quarantine["raw"].str.len().gt(10).all()  # the evidence is kept
    # Only the valid 5 clicks reached the features: not the negative ones, not the duplicate.
    assert _cum_clicks(settings, key, 14) == before + 5
    assert _cum_clicks(settings, key, 7) == before_7  # the snapshot before day 10 is unchanged
    again = ingest_events(events, tables=tables, settings=settings)
    assert again["accepted"] == 0 and again["already_ingested"] == 2
    assert _cum_clicks(settings, key, 14) == before + 5
    assert len(read_clicks(settings.feast_dir)) == 1


def test_events_do_not_change_features_before_they_happened(oulad_offline) -> None:
    settings, tables = oulad_offline
    regs = pd.read_parquet(settings.feast_dir / "data" / "registrations.parquet")
    reg = regs[(regs["course"] == "AAA-2013J") & ~(regs["date_registration"] > 0)].iloc[1]
    site = int(tables.vle[(tables.vle["code_module"] == "AAA")]["id_site"].iloc[0])
    before_7, before_70 = _cum_clicks(settings, reg["student_course"], 7), _cum_clicks(settings,
                                                                                      reg["student_course"], 70)
    ingest_events([_click(int(reg["id_student"]), "AAA-2013J", site, day=60, clicks=9,
                          event_id=str(uuid.uuid4()))], tables=tables, settings=settings)
    assert _cum_clicks(settings, reg["student_course"], 7) == before_7
    assert _cum_clicks(settings, reg["student_course"], 70) == before_70 + 9


def test_replaying_the_oulad_import_clicks_counts_nothing_twice(oulad_offline) -> None:
    # The platform's analytics stream holds the imported studentVle clicks; the offline build already reads them.
    from pipelines.api import import_oulad
    from platform_api.api import open_session, read_events

    settings, tables = oulad_offline
    import_oulad(tables=tables, settings=settings, presentations=["AAA-2013J"])
    with open_session(settings) as session:
        imported = [event for _, event in read_events(session=session, topic="lms.analytics.events", limit=50_000)]
    key = pd.read_parquet(settings.feast_dir / "data" / "registrations.parquet").query(
        "course == 'AAA-2013J' and has_clicks")["student_course"].iloc[0]
    before = _cum_clicks(settings, key, 70)
    report = ingest_events(imported, tables=tables, settings=settings)
    assert len(imported) > 100
    assert report["accepted"] == 0 and report["already_ingested"] == len(imported)
    assert report["quarantined_total"] == 0
    assert _cum_clicks(settings, key, 70) == before


def test_events_stamped_in_the_future_are_quarantined(oulad_offline) -> None:
    """The platform stored opens stamped 2300 before it refused them: they are garbage, not clicks on day 104,000."""
    from datetime import UTC, datetime

    settings, tables = oulad_offline
    regs = pd.read_parquet(settings.feast_dir / "data" / "registrations.parquet")
    reg = regs[(regs["course"] == "AAA-2013J") & ~(regs["date_registration"] > 0)].iloc[2]
    site = int(tables.vle[(tables.vle["code_module"] == "AAA")]["id_site"].iloc[0])
    before = _cum_clicks(settings, reg["student_course"], 14)
    later = [_click(int(reg["id_student"]), "AAA-2013J", site, day=10, event_id=str(uuid.uuid4()),
                    timestamp=when) for when in ("2300-01-01T00:00:00Z", (datetime.now(UTC) + timedelta(days=7))
                                                 .isoformat())]
    report = ingest_events([*later, _click(int(reg["id_student"]), "AAA-2013J", site, day=10, clicks=2)],
                           tables=tables, settings=settings)
    assert report["accepted"] == 1 and report["quarantined"] == {"malformed_timestamp": 2}
    assert read_quarantine(settings.feast_dir)["detail"].str.contains("after the ingestion time").all()
    assert _cum_clicks(settings, reg["student_course"], 14) == before + 2


def _activity_setup(settings, tables, row: int):
    regs = pd.read_parquet(settings.feast_dir / "data" / "registrations.parquet")
    reg = regs[(regs["course"] == "AAA-2013J") & ~(regs["date_registration"] > 0)].iloc[row]
    site = int(tables.vle[(tables.vle["code_module"] == "AAA") & (tables.vle["code_presentation"] == "2013J")]
               ["id_site"].iloc[0])
    return reg["student_course"], int(reg["id_student"]), site


def _nats_copies(envelope: dict, tmp_path, *, window_s: float) -> list[str]:
    """Publish ``envelope`` the way the outbox relay does, twice within JetStream's duplicate window and once after
    it (a relay that stopped between the ack and marking the row, restarted later), plus once with no message id:
    the JetStream messages (JSON) a consumer of the stream reads."""
    import asyncio
    import json
    import shutil
    import time

    import nats
    from down_services import closed_port, start_server
    from nats.js.api import ConsumerConfig, DeliverPolicy
    from service_checks import service_missing

    from platform_api._outbox import NatsPublisher

    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        service_missing("nats-server is not installed (Debian package nats-server)")
    port = closed_port()
    server = start_server([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js")], port,
                          "nats-server")
    url, topic = f"nats://127.0.0.1:{port}", "lms.analytics.events"

    async def run() -> list[str]:
        relay = NatsPublisher(url, stream=f"LMS_EVENTS_{uuid.uuid4().hex[:8]}", duplicate_window_s=window_s)
        try:
            await relay.publish(topic, envelope)
            await relay.publish(topic, envelope)  # within the window: JetStream drops it
            await asyncio.sleep(window_s + 0.5)
            await relay.publish(topic, envelope)  # later than the window: the stream keeps it
        finally:
            await relay.close()
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.publish(topic, json.dumps(envelope).encode())  # a producer that sets no message id
            sub = await js.pull_subscribe(topic, durable=None,
                                          config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
            messages = await sub.fetch(10, timeout=2)
            for message in messages:
                await message.ack()
            return [message.data.decode() for message in messages]
        finally:
            await nc.close()

    try:
        started = time.monotonic()
        copies = asyncio.run(run())
        assert time.monotonic() - started > window_s
        return copies
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_an_event_published_again_after_the_duplicate_window_counts_once(oulad_offline, tmp_path) -> None:
    """A real JetStream stream with a 1 s duplicate window: the relay's copy after it and a copy without a message
    id both reach the consumer. The features count the clicks once, whether the copies come in one batch (they
    were quarantined as garbage) or in a later one."""
    from recommender.api import interactions_from_events

    settings, tables = oulad_offline
    key, student, site = _activity_setup(settings, tables, 3)
    before = _cum_clicks(settings, key, 14)
    envelope = _click(student, "AAA-2013J", site, day=10, clicks=4)
    copies = _nats_copies(envelope, tmp_path, window_s=1.0)
    assert len(copies) == 3 and {json.loads(copy)["event_id"] for copy in copies} == {envelope["event_id"]}
    report = ingest_events(copies, tables=tables, settings=settings)
    assert (report["accepted"], report["already_ingested"], report["quarantined_total"]) == (1, 2, 0)
    assert _cum_clicks(settings, key, 14) == before + 4
    later = ingest_events(copies[-1:], tables=tables, settings=settings)  # a copy in a later batch
    assert (later["accepted"], later["already_ingested"]) == (0, 1)
    assert _cum_clicks(settings, key, 14) == before + 4
    assert len(read_clicks(settings.feast_dir)) == 1 and read_quarantine(settings.feast_dir).empty
    # The recommender's training reads the same export: one open, not three.
    assert len(interactions_from_events(copies)) == 1


def test_a_stop_between_the_features_and_the_ledger_counts_the_events_once(oulad_offline, monkeypatch) -> None:
    """The ingestion stops part way and the same events come again. Stopped before the features were recomputed,
    the events used to be in the ledger already and were skipped for good; stopped after, they count once."""
    import pipelines._events as events_module
    import pipelines.api as pipelines_api

    settings, tables = oulad_offline
    key, student, site = _activity_setup(settings, tables, 4)
    before = _cum_clicks(settings, key, 14)
    events = [_click(student, "AAA-2013J", site, day=9, clicks=2), _click(student, "AAA-2013J", site, day=10)]

    def stop(*args, **kwargs):
        raise RuntimeError("the process stopped here")

    with monkeypatch.context() as patch:  # stopped while recomputing the features
        patch.setattr(pipelines_api, "_recompute_activity", stop)
        with pytest.raises(RuntimeError, match="stopped here"):
            ingest_events(events, tables=tables, settings=settings)
    assert _cum_clicks(settings, key, 14) == before
    again = ingest_events(events, tables=tables, settings=settings)
    assert again["accepted"] == 2 and _cum_clicks(settings, key, 14) == before + 5

    more = [_click(student, "AAA-2013J", site, day=11, clicks=7)]
    real_append = events_module.append_parquet

    def stop_at_the_ledger(frame, path):
        if path.name == "clicks.parquet":
            raise RuntimeError("the process stopped here")
        real_append(frame, path)

    with monkeypatch.context() as patch:  # stopped after the features, before the ledger
        patch.setattr(events_module, "append_parquet", stop_at_the_ledger)
        with pytest.raises(RuntimeError, match="stopped here"):
            ingest_events(more, tables=tables, settings=settings)
    replay = ingest_events(more, tables=tables, settings=settings)
    assert replay["accepted"] == 1 and _cum_clicks(settings, key, 14) == before + 5 + 7
    assert len(read_clicks(settings.feast_dir)) == 3
