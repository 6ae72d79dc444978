"""OULAD → platform import: every table lands where it belongs, clicks become analytics events with the right
counts, and a second run (or a subset then the rest) inserts nothing twice."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from feature_fixtures import synthetic_oulad  # registered by this folder's conftest (loaded by path)
from service_checks import service_missing
from sqlalchemy import text

from learnloop.errors import InvalidInput
from learnloop.events import Topic
from pipelines.api import import_oulad
from platform_api.api import open_session, read_events


def _tables():
    tables = synthetic_oulad(n_students=14, seed=9)
    vle = tables.student_vle
    # Upstream studentVle repeats a (student, site, day) key on some rows: they must become one event.
    repeated = vle.iloc[[0, 5]].assign(sum_click=[4, 6])
    # Like the real vle, a share of the items carries a planned week (week_from, 0 = the first).
    sites = tables.vle.assign(week_from=pd.array([i % 9 if i % 3 == 0 else None for i in range(len(tables.vle))],
                                                 dtype="Int64"))
    return dataclasses.replace(tables, student_vle=pd.concat([vle, repeated], ignore_index=True), vle=sites)


def _counts(settings) -> dict[str, int]:
    with open_session(settings) as session:
        return {table: session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
                for table in ("users", "courses", "enrollments", "content_items", "content_versions", "assessments",
                              "submissions", "grades", "outbox_events")}


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def test_oulad_lands_in_the_platform_once(settings) -> None:
    tables = _tables()
    report = import_oulad(tables=tables, settings=settings)
    counts = _counts(settings)
    info, vle = tables.student_info, tables.student_vle
    keys = vle.groupby(["code_module", "code_presentation", "id_student", "id_site", "date"]).ngroups
    assert keys < len(vle)  # the repeated keys really were there
    students = info["id_student"].nunique()
    assert counts["courses"] == len(tables.courses) == 4
    assert counts["users"] == students + info["code_module"].nunique()  # + one instructor per module
    assert counts["enrollments"] == len(info)
    assert counts["content_items"] == counts["content_versions"] == len(tables.vle)
    assert counts["assessments"] == len(tables.assessments)
    assert counts["submissions"] == len(tables.student_assessment)
    assert counts["grades"] == int(tables.student_assessment["score"].notna().sum())
    assert report["source_rows"]["click_events"] == keys
    assert report["inserted"]["events"] == counts["outbox_events"]

    with open_session(settings) as session:
        events = [event for _, event in read_events(session=session, topic=Topic.analytics, limit=100_000)]
        presentation = session.execute(text("SELECT metadata FROM courses WHERE title = 'OULAD AAA 2013J'")).scalar_one()
        student = int(info["id_student"].iloc[3])
        user = session.execute(text("SELECT id, metadata FROM users WHERE email = :e"),
                               {"e": f"student{student}@oulad.example"}).one()
        withdrawn = info[(info["final_result"] == "Withdrawn") & (info["code_presentation"] == "2013J")
                         & (info["code_module"] == "AAA")].iloc[0]
        unreg = tables.registrations.set_index(["code_module", "code_presentation", "id_student"]).loc[
            ("AAA", "2013J", int(withdrawn["id_student"])), "date_unregistration"]
        dropped = session.execute(text(
            "SELECT e.status, e.completed_at FROM enrollments e JOIN users u ON u.id = e.user_id "
            "JOIN courses c ON c.id = e.course_id WHERE u.email = :e AND c.title = 'OULAD AAA 2013J'"),
            {"e": f"student{int(withdrawn['id_student'])}@oulad.example"}).one()
    assert _json(presentation)["presentation"] == "AAA-2013J"
    assert _json(user.metadata)["id_student"] == student
    assert set(_json(user.metadata)["registrations"]) == set(
        info.loc[info["id_student"] == student, "code_module"] + "-"
        + info.loc[info["id_student"] == student, "code_presentation"])
    assert dropped.status == "dropped"
    completed = pd.Timestamp(dropped.completed_at)
    completed = completed.tz_localize(UTC) if completed.tzinfo is None else completed
    assert completed == pd.Timestamp(datetime(2013, 10, 1, tzinfo=UTC) + timedelta(days=int(unreg)))
    # Clicks: one resource_click per (student, site, day), the day's total, on the analytics topic.
    assert len(events) == keys
    assert {e.event_type for e in events} == {"resource_click"}
    assert sum(e.payload["clicks"] for e in events) == int(vle["sum_click"].sum())
    first = vle.iloc[0]
    same_key = vle[(vle["id_student"] == first["id_student"]) & (vle["id_site"] == first["id_site"])
                   & (vle["date"] == first["date"]) & (vle["code_presentation"] == first["code_presentation"])]
    merged = [e for e in events if e.payload["id_student"] == first["id_student"]
              and e.payload["id_site"] == first["id_site"] and e.payload["day"] == first["date"]
              and e.payload["presentation"] == f"{first['code_module']}-{first['code_presentation']}"]
    assert len(merged) == 1 and merged[0].payload["clicks"] == int(same_key["sum_click"].sum())
    stamp = merged[0].timestamp
    start = datetime(int(first["code_presentation"][:4]), 2 if first["code_presentation"][4] == "B" else 10, 1,
                     tzinfo=UTC)
    assert (stamp - start) // timedelta(days=1) == int(first["date"])  # maps back to its OULAD day

    # The course plan: OULAD's week_from (0 = the first week) is the item's planned_week (1 = the first), in the
    # table and in the content.created events the recommender's training reads.
    with open_session(settings) as session:
        planned = {str(uuid.UUID(str(row.id))): (row.planned_week, _json(row.metadata)["week_from"]) for row in session.execute(
            text("SELECT id, planned_week, metadata FROM content_items"))}
        created = {e.payload["content_id"]: e.payload for _, e in read_events(session=session, topic=Topic.content,
                                                                              limit=100_000)}
    assert any(week is not None for week, _ in planned.values())
    assert all(week == (None if source is None else source + 1) for week, source in planned.values())
    assert {item: payload["planned_week"] for item, payload in created.items()} == {
        item: week for item, (week, _) in planned.items()}

    again = import_oulad(tables=tables, settings=settings)
    assert again["inserted"] == {}
    assert _counts(settings) == counts


def test_a_subset_then_everything_equals_everything_at_once(settings, tmp_path) -> None:
    from learnloop.settings import Settings

    tables = _tables()
    first = import_oulad(tables=tables, settings=settings, presentations=["AAA-2013J"])
    assert first["presentations"] == ["AAA-2013J"]
    assert _counts(settings)["courses"] == 1
    import_oulad(tables=tables, settings=settings)
    other = Settings(data_dir=tmp_path / "other")
    import_oulad(tables=tables, settings=other)
    assert _counts(settings) == _counts(other)
    with pytest.raises(InvalidInput, match="ZZZ-2013J"):
        import_oulad(tables=tables, settings=settings, presentations=["ZZZ-2013J"])


@pytest.mark.parametrize("key", [11391, "AAA-2013J", "AAA-2013J:11391:546943:-10", "ü"])
def test_ids_are_uuid5_of_the_oulad_key(key) -> None:
    import uuid

    from pipelines._oulad_import import NAMESPACE, _uuid_text, oulad_uuid

    assert oulad_uuid("student", key) == uuid.uuid5(NAMESPACE, f"oulad:student:{key}")
    assert _uuid_text("click", key) == str(uuid.uuid5(NAMESPACE, f"oulad:click:{key}"))


@pytest.mark.integration
def test_the_import_runs_on_postgresql_too(tmp_path) -> None:
    # Bulk insert-or-skip compiles per dialect: the platform's server form (PostgreSQL) gets the same rows once.
    import uuid

    psycopg = pytest.importorskip("psycopg")
    from learnloop.settings import Settings

    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL not reachable on 127.0.0.1: {exc}")
    schema = f"oulad_import_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        pg = Settings(data_dir=tmp_path / "pg", database_url="postgresql+psycopg://postgres@127.0.0.1:5432/test"
                      f"?options=-csearch_path%3D{schema}")
        embedded = Settings(data_dir=tmp_path / "sqlite")
        tables = _tables()
        first = import_oulad(tables=tables, settings=pg)
        again = import_oulad(tables=tables, settings=pg)
        import_oulad(tables=tables, settings=embedded)
        assert first["inserted"]["events"] > 1000 and again["inserted"] == {}
        assert _counts(pg) == _counts(embedded)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
