"""Event log → offline sources: garbage is quarantined with a reason and counted, valid clicks land in the
activity features, and replaying the stream changes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pandas as pd

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
    duplicate = dict(good)
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
