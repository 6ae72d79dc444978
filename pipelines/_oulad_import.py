"""OULAD → the platform: a real institution in the LMS database, written through ``platform_api.api``.

| OULAD | platform |
|---|---|
| courses (module-presentations) | courses (``metadata.presentation`` = ``AAA-2013J``), one instructor per module |
| studentInfo | users (``metadata.id_student``, background, every registration's dates and final result) |
| studentRegistration + final_result | enrollments: ``started_at`` = registration day, Withdrawn → ``dropped`` with ``completed_at`` = unregistration day, otherwise ``completed`` at the presentation's end |
| vle | content items (``metadata.id_site``, ``activity_type``, weeks) |
| assessments / studentAssessment | assessments (``due_at``, weight) / submissions at ``date_submitted`` with a final grade |
| studentVle | ``resource_click`` events on ``lms.analytics.events``, one per (student, site, day) with the day's click count |

studentVle already counts clicks per student, site and day, but repeats a key on a few rows (753,564 rows,
561,862 keys): those are summed into one event, so an event is "this learner clicked this item n times that
day" (stamped at noon of the day). Every row has a uuid5 id of its OULAD key (events too), and
``platform_api.api.import_records`` skips existing ids, so a second run inserts nothing. History goes in
as already published: ``read_events`` replays it, the relay does not push it to live subscribers.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from learnloop.datasets import OuladTables, content_kind
from learnloop.errors import InvalidInput
from learnloop.settings import Settings, get_settings
from pipelines._events import OULAD_IMPORT_SOURCE
from pipelines._snapshots import presentation_start

NAMESPACE = uuid.UUID("5d1e0c7a-6f0b-4c59-9d3a-0a11ad0e4d5a")  # never change: ids must stay stable
SOURCE = OULAD_IMPORT_SOURCE
CHUNK = 20_000
_ASSESSMENT_KIND = {"TMA": "assignment", "CMA": "quiz", "Exam": "exam"}

Progress = Callable[[str, int, int], None]  # (step, done, total)


_NAMESPACE_BYTES = NAMESPACE.bytes


def _uuid5_bytes(name: str) -> bytes:
    """``uuid.uuid5(NAMESPACE, name).bytes`` without building the intermediate objects (a million ids)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return bytes(digest)


def oulad_uuid(kind: str, key: object) -> uuid.UUID:
    """The stable id of an OULAD record, e.g. ``oulad_uuid("student", 11391)`` (= uuid5 of ``oulad:kind:key``)."""
    return uuid.UUID(bytes=_uuid5_bytes(f"oulad:{kind}:{key}"))


def _uuid_text(kind: str, key: object) -> str:
    """``str(oulad_uuid(kind, key))``, formatted directly."""
    h = _uuid5_bytes(f"oulad:{kind}:{key}").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(stamp: datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=64)
def _start(course: str) -> datetime:
    return presentation_start(course.split("-")[1])


def _day(course: str, day) -> datetime | None:
    """OULAD day ``day`` of presentation ``course`` as a UTC datetime (None for a missing day)."""
    if day is None or (isinstance(day, float) and math.isnan(day)) or day is pd.NA:
        return None
    return _start(course) + timedelta(days=int(day))


def _opt(value):
    """A JSON-safe scalar (NaN / NA → None, numpy → Python)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _select(tables: OuladTables, presentations: Sequence[str] | None) -> tuple[OuladTables, list[str]]:
    import dataclasses

    courses = tables.courses.assign(course=tables.courses["code_module"] + "-" + tables.courses["code_presentation"])
    known = list(courses["course"])
    if presentations is None:
        return tables, known
    wanted = [p.strip().replace("_", "-") for p in presentations if p.strip()]
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise InvalidInput(f"unknown presentations {unknown}; OULAD has {', '.join(known)}")

    def keep(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame[(frame["code_module"] + "-" + frame["code_presentation"]).isin(wanted)]

    assessments = keep(tables.assessments)
    subs = tables.student_assessment[tables.student_assessment["id_assessment"].isin(assessments["id_assessment"])]
    return dataclasses.replace(tables, courses=keep(tables.courses), assessments=assessments, vle=keep(tables.vle),
                               student_info=keep(tables.student_info), registrations=keep(tables.registrations),
                               student_assessment=subs, student_vle=keep(tables.student_vle)), wanted


def _event(event_id: uuid.UUID, event_type: str, stamp: pd.Timestamp, *, user_id=None, course_id=None,
           payload: dict[str, Any]) -> dict[str, Any]:
    """An ``learnloop.events.Event`` envelope in its JSON form (built directly: a million pydantic models cost a
    minute; ``import_records`` validates the first of each batch)."""
    return {"event_id": str(event_id), "event_type": event_type, "timestamp": _iso(stamp), "source_service": SOURCE,
            "user_id": None if user_id is None else str(user_id),
            "course_id": None if course_id is None else str(course_id), "session_id": None,
            "payload": {**payload, "import": True}}


def import_oulad(*, tables: OuladTables | None = None, settings: Settings | None = None,
                 presentations: Sequence[str] | None = None, progress: Progress | None = None,
                 chunk_size: int = CHUNK) -> dict[str, Any]:
    """Load OULAD (``tables`` default: ``load_oulad()``) into the platform database of ``settings``.

    ``presentations`` (``AAA-2013J`` keys) restricts the import. Idempotent (see the module docstring).
    Returns source rows, rows inserted per kind, and seconds per step.
    """
    from platform_api import data as pdata
    from platform_api.api import import_records, open_session

    settings = settings or get_settings()
    settings.ensure_dirs()
    timings: dict[str, float] = {}
    started, started_cpu = time.perf_counter(), time.process_time()
    if tables is None:
        from learnloop.datasets import load_oulad

        tables = load_oulad()
    all_info, all_regs = tables.student_info, tables.registrations
    tables, wanted = _select(tables, presentations)
    timings["load_s"] = time.perf_counter() - started
    inserted: dict[str, int] = {}

    def add(counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            if n:
                inserted[kind] = inserted.get(kind, 0) + n

    courses = tables.courses.assign(course=tables.courses["code_module"] + "-" + tables.courses["code_presentation"])
    course_ids = {c: oulad_uuid("course", c) for c in courses["course"]}
    source_rows = {"courses": len(courses), "students": int(tables.student_info["id_student"].nunique()),
                   "registrations": len(tables.registrations), "content": len(tables.vle),
                   "assessments": len(tables.assessments), "submissions": len(tables.student_assessment),
                   "click_rows": 0 if tables.student_vle is None else len(tables.student_vle)}

    def step(name: str, done: int, total: int) -> None:
        if progress:
            progress(name, done, total)

    with open_session(settings) as session:
        # ---- courses and their instructors
        started = time.perf_counter()
        step("courses", 0, len(courses))
        instructors = [pdata.NewUser(email=f"oulad-{m.lower()}-staff@oulad.example", name=f"OULAD {m} module team",
                                     role=pdata.UserRole.instructor, metadata={"source": "oulad", "code_module": m},
                                     id=oulad_uuid("instructor", m)) for m in sorted(courses["code_module"].unique())]
        new_courses, events = [], []
        for row in courses.itertuples(index=False):
            start = presentation_start(row.code_presentation)
            length = int(row.module_presentation_length)
            cid = course_ids[row.course]
            new_courses.append(pdata.NewCourse(
                title=f"OULAD {row.code_module} {row.code_presentation}", instructor_id=oulad_uuid("instructor",
                                                                                                  row.code_module),
                description=f"Open University module {row.code_module}, presentation {row.code_presentation} "
                            f"({length} days from {start.date()}).",
                duration_weeks=math.ceil(length / 7), id=cid, starts_at=start,
                metadata={"source": "oulad", "presentation": row.course, "code_module": row.code_module,
                          "code_presentation": row.code_presentation, "length_days": length,
                          "start": start.date().isoformat()}))
            for kind in ("course.created", "course.published"):
                events.append(_event(oulad_uuid(kind, row.course), kind, start - timedelta(days=180),
                                     user_id=oulad_uuid("instructor", row.code_module), course_id=cid,
                                     payload={"title": f"OULAD {row.course}", "presentation": row.course,
                                              "start": start.isoformat()}))
        add(import_records(session=session, users=instructors, courses=new_courses, events=events))
        step("courses", len(courses), len(courses))
        timings["courses_s"] = time.perf_counter() - started

        # ---- students: one user each, every registration's facts in metadata (from all of OULAD, so a subset
        # import and a full one write the same user)
        started = time.perf_counter()
        info = all_info[all_info["id_student"].isin(tables.student_info["id_student"])]
        regs_all = info.merge(all_regs, on=["code_module", "code_presentation", "id_student"], how="left")
        per_student: dict[int, dict[str, Any]] = {}
        for row in regs_all.itertuples(index=False):
            record = per_student.setdefault(int(row.id_student), {
                "source": "oulad", "id_student": int(row.id_student), "gender": _opt(row.gender),
                "region": _opt(row.region), "highest_education": _opt(row.highest_education),
                "imd_band": _opt(row.imd_band), "age_band": _opt(row.age_band), "disability": _opt(row.disability),
                "registrations": {}})
            record["registrations"][f"{row.code_module}-{row.code_presentation}"] = {
                "date_registration": _opt(row.date_registration), "date_unregistration": _opt(row.date_unregistration),
                "final_result": row.final_result, "num_of_prev_attempts": _opt(row.num_of_prev_attempts),
                "studied_credits": _opt(row.studied_credits)}
        students = sorted(per_student)
        user_ids = {s: oulad_uuid("student", s) for s in students}
        for lo in range(0, len(students), chunk_size):
            part = students[lo:lo + chunk_size]
            users = [pdata.NewUser(email=f"student{s}@oulad.example", name=f"OULAD student {s}",
                                   metadata=per_student[s], id=user_ids[s]) for s in part]
            events = [_event(oulad_uuid("user.created", s), "user.created", datetime(2013, 1, 1, tzinfo=UTC),
                             user_id=user_ids[s], payload={"role": "student", "id_student": s}) for s in part]
            add(import_records(session=session, users=users, events=events))
            step("students", lo + len(part), len(students))
        timings["students_s"] = time.perf_counter() - started

        # ---- enrollments (registration dates, final result)
        started = time.perf_counter()
        regs = tables.student_info.merge(tables.registrations, on=["code_module", "code_presentation", "id_student"],
                                         how="left")
        length_of = dict(zip(courses["course"], courses["module_presentation_length"].astype(int), strict=True))
        records = list(regs.itertuples(index=False))
        for lo in range(0, len(records), chunk_size):
            enrollments, events = [], []
            for row in records[lo:lo + chunk_size]:
                course = f"{row.code_module}-{row.code_presentation}"
                withdrawn = row.final_result == "Withdrawn"
                started_at = _day(course, _opt(row.date_registration)) or _day(course, 0)
                end = _day(course, length_of[course])
                completed_at = (_day(course, _opt(row.date_unregistration)) or end) if withdrawn else end
                eid = oulad_uuid("enrollment", f"{row.id_student}:{course}")
                status = pdata.EnrollmentStatus.dropped if withdrawn else pdata.EnrollmentStatus.completed
                enrollments.append(pdata.NewEnrollment(
                    user_id=user_ids[int(row.id_student)], course_id=course_ids[course], status=status,
                    progress=0.0 if withdrawn else 100.0, id=eid, started_at=started_at,
                    completed_at=completed_at))
                events.append(_event(oulad_uuid("enrollment.created", eid), "enrollment.created", started_at,
                                     user_id=user_ids[int(row.id_student)], course_id=course_ids[course],
                                     payload={"enrollment_id": str(eid), "status": status.value,
                                              "final_result": row.final_result,
                                              "date_registration": _opt(row.date_registration),
                                              "date_unregistration": _opt(row.date_unregistration)}))
            add(import_records(session=session, enrollments=enrollments, events=events))
            step("enrollments", min(lo + chunk_size, len(records)), len(records))
        timings["enrollments_s"] = time.perf_counter() - started

        # ---- content items (VLE sites)
        started = time.perf_counter()
        vle = tables.vle.assign(course=tables.vle["code_module"] + "-" + tables.vle["code_presentation"])
        site_ids = {int(s): oulad_uuid("site", int(s)) for s in vle["id_site"]}
        items, events = [], []
        for row in vle.itertuples(index=False):
            cid = site_ids[int(row.id_site)]
            kind = pdata.ContentKind(content_kind(row.activity_type))
            planned_week = None if _opt(row.week_from) is None else int(row.week_from) + 1  # OULAD weeks from 0
            items.append(pdata.NewContent(
                course_id=course_ids[row.course], title=f"{row.activity_type} {row.id_site}", kind=kind, id=cid,
                planned_week=planned_week,
                metadata={"source": "oulad", "id_site": int(row.id_site), "activity_type": row.activity_type,
                          "week_from": _opt(row.week_from), "week_to": _opt(row.week_to)}))
            events.append(_event(oulad_uuid("content.created", row.id_site), "content.created",
                                 _day(row.course, -30), course_id=course_ids[row.course],
                                 payload={"content_id": str(cid), "id_site": int(row.id_site), "kind": kind.value,
                                          "planned_week": planned_week}))
        add(import_records(session=session, content=items, events=events))
        step("content", len(items), len(items))
        timings["content_s"] = time.perf_counter() - started

        # ---- assessments and submissions
        started = time.perf_counter()
        assess = tables.assessments.assign(
            course=tables.assessments["code_module"] + "-" + tables.assessments["code_presentation"])
        assessment_ids = {int(a): oulad_uuid("assessment", int(a)) for a in assess["id_assessment"]}
        course_of_assessment = dict(zip(assess["id_assessment"].astype(int), assess["course"], strict=True))
        new_assessments, events = [], []
        for row in assess.itertuples(index=False):
            aid = assessment_ids[int(row.id_assessment)]
            due = _day(row.course, _opt(row.date))
            new_assessments.append(pdata.NewAssessment(
                course_id=course_ids[row.course], title=f"{row.assessment_type} {row.id_assessment}",
                kind=pdata.AssessmentKind(_ASSESSMENT_KIND.get(row.assessment_type, "assignment")),
                weight=float(row.weight), id=aid, due_at=due,
                metadata={"source": "oulad", "id_assessment": int(row.id_assessment),
                          "assessment_type": row.assessment_type, "date": _opt(row.date)}))
            events.append(_event(oulad_uuid("assessment.created", row.id_assessment), "assessment.created",
                                 _day(row.course, -30), course_id=course_ids[row.course],
                                 payload={"assessment_id": str(aid), "kind": row.assessment_type}))
        add(import_records(session=session, assessments=new_assessments, events=events))
        registered = set(zip(regs["id_student"].astype(int), regs["code_module"] + "-" + regs["code_presentation"],
                             strict=True))
        subs = [row for row in tables.student_assessment.itertuples(index=False)
                if (int(row.id_student), course_of_assessment[int(row.id_assessment)]) in registered]
        source_rows["submissions_unregistered"] = len(tables.student_assessment) - len(subs)
        for lo in range(0, len(subs), chunk_size):
            submissions, events = [], []
            for row in subs[lo:lo + chunk_size]:
                course = course_of_assessment[int(row.id_assessment)]
                sid = oulad_uuid("submission", f"{row.id_assessment}:{row.id_student}")
                when = _day(course, _opt(row.date_submitted)) or _day(course, 0)
                score = _opt(row.score)
                submissions.append(pdata.NewSubmission(
                    assessment_id=assessment_ids[int(row.id_assessment)], user_id=user_ids[int(row.id_student)],
                    score=None if score is None else float(score), id=sid, submitted_at=when,
                    course_id=course_ids[course],
                    metadata={"source": "oulad", "date_submitted": _opt(row.date_submitted),
                              "is_banked": bool(row.is_banked), "score_missing": score is None}))
                events.append(_event(oulad_uuid("submission.created", sid), "submission.created", when,
                                     user_id=user_ids[int(row.id_student)], course_id=course_ids[course],
                                     payload={"submission_id": str(sid),
                                              "assessment_id": str(assessment_ids[int(row.id_assessment)]),
                                              "score": score, "max_score": 100.0}))
            add(import_records(session=session, submissions=submissions, events=events))
            step("submissions", min(lo + chunk_size, len(subs)), len(subs))
        timings["assessments_s"] = time.perf_counter() - started

        # ---- clicks → lms.analytics.events
        started = time.perf_counter()
        total = 0
        for done, total, events in _click_events(tables, user_ids, course_ids, site_ids, chunk_size):
            add(import_records(session=session, events=events))
            step("clicks", done, total)
        source_rows["click_events"] = total
        timings["clicks_s"] = time.perf_counter() - started
    timings["total_s"] = sum(timings.values())
    timings["cpu_s"] = time.process_time() - started_cpu  # this process's CPU: the cost on a shared machine
    return {"presentations": wanted, "source_rows": source_rows, "inserted": inserted,
            "timings": {k: round(v, 2) for k, v in timings.items()}}


def _click_events(tables: OuladTables, user_ids: dict[int, uuid.UUID], course_ids: dict[str, uuid.UUID],
                  site_ids: dict[int, uuid.UUID], chunk_size: int) -> Iterator[tuple[int, int, list[dict]]]:
    """(done, total, envelopes) per chunk: one ``resource_click`` per (student, site, day), clicks summed."""
    vle = tables.student_vle
    if vle is None or not len(vle):
        yield 0, 0, []
        return
    grouped = (vle.groupby(["code_module", "code_presentation", "id_student", "id_site", "date"], sort=True)
               ["sum_click"].sum().reset_index())
    grouped = grouped[grouped["id_student"].isin(list(user_ids))]
    activity = tables.vle.set_index("id_site")["activity_type"].to_dict()
    total = len(grouped)
    user_text = {k: str(v) for k, v in user_ids.items()}
    course_text = {k: str(v) for k, v in course_ids.items()}
    site_text = {k: str(v) for k, v in site_ids.items()}
    for lo in range(0, total, chunk_size):
        part = grouped.iloc[lo:lo + chunk_size]
        courses = (part["code_module"] + "-" + part["code_presentation"]).to_numpy()
        start_of = {c: np.datetime64(presentation_start(c.split("-")[1]).replace(tzinfo=None), "s")
                    for c in set(courses)}
        starts = np.array([start_of[c] for c in courses], dtype="datetime64[s]")
        days = part["date"].to_numpy().astype("int64")
        # Noon of the day: "some time that day" (OULAD counts clicks per day), ISO like the Event's JSON form.
        stamps = np.datetime_as_string(starts + (days * 86400 + 43200).astype("timedelta64[s]"), unit="s")
        envelopes = []
        for course, student, site, day, clicks, stamp in zip(courses, part["id_student"].to_numpy().tolist(),
                                                             part["id_site"].to_numpy().tolist(), days.tolist(),
                                                             part["sum_click"].to_numpy().tolist(), stamps,
                                                             strict=True):
            envelopes.append({
                "event_id": _uuid_text("click", f"{course}:{student}:{site}:{day}"),
                "event_type": "resource_click", "timestamp": stamp + "Z", "source_service": SOURCE,
                "user_id": user_text[student], "course_id": course_text[course], "session_id": None,
                "payload": {"content_id": site_text.get(site) or str(oulad_uuid("site", site)), "clicks": clicks,
                            "activity_type": activity.get(site), "id_student": student, "id_site": site,
                            "presentation": course, "day": day, "import": True}})
        yield min(lo + chunk_size, total), total, envelopes
