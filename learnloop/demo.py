"""`learnloop demo`: set up every embedded component and run the loop end to end.

data → platform database (+ first admin) → features (offline build, Feast apply, materialize) → train the
at-risk model (MLflow, ONNX) → promote it through the gate → train + promote the
next-item recommender (ONNX) → index the catalog for search → train the
per-prompt essay graders → serve the
model service and the platform API. Like the CLI, this module is a composition root: it calls the
packages' public ``api`` surfaces and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from learnloop.settings import Settings, get_settings

console = Console(stderr=True)
DEMO_ADMIN_EMAIL = "admin@learnloop.example"


def demo_id(name: str) -> uuid.UUID:
    """The fixed id of a row the demo creates (``"essay-course"``, ``"essay-learner/0"``, ``"catalog/edx"``,
    ``"essay-reading/0"``…): the same on every run and machine, so the README's first steps can name them."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"learnloop-demo/{name}")


# The rows the README's first steps name: the demo's steps create exactly these.
ESSAY_COURSE_ID = demo_id("essay-course")
ESSAY_LEARNER_IDS = tuple(demo_id(f"essay-learner/{i}") for i in range(3))


def catalog_course_id(source: str) -> uuid.UUID:
    return demo_id(f"catalog/{source}")


@dataclass
class DemoContext:
    settings: Settings
    synthetic: bool
    datasets_root: Path | None = None
    facts: dict[str, object] = field(default_factory=dict)


def _use_datasets(ctx: DemoContext) -> str:
    from learnloop.datasets import check_datasets, write_synthetic

    real = ctx.settings.datasets_dir
    if not ctx.synthetic and real is not None and (Path(real) / "oulad").is_dir():
        ctx.datasets_root = Path(real)
    else:
        ctx.datasets_root = ctx.settings.data_path / "synth"
        if not (ctx.datasets_root / "oulad" / "studentInfo.csv").exists():
            write_synthetic(ctx.datasets_root)
        ctx.synthetic = True
    # Every package reads the data location from settings: point them all at the chosen root.
    os.environ["LEARNLOOP_DATASETS_DIR"] = str(ctx.datasets_root)
    get_settings.cache_clear()
    ctx.settings = get_settings()
    report = check_datasets(ctx.datasets_root)
    if not report["ok"]:
        bad = next((d["error"] for d in report["datasets"].values() if d["status"] == "invalid"), report.get("error"))
        raise SystemExit(f"data check failed: {bad}")
    found = [name for name, d in report["datasets"].items() if d["status"] == "ok"]
    kind = "synthetic" if ctx.synthetic else "real"
    return f"{kind} data in {ctx.datasets_root}: {', '.join(found)}"


def _platform(ctx: DemoContext) -> str:
    from learnloop.errors import Conflict
    from platform_api.api import create_admin, open_session

    password = os.environ.get("LEARNLOOP_ADMIN_PASSWORD")
    password_file = ctx.settings.data_path / "demo-admin-password.txt"
    if password is None:
        if password_file.exists():
            password = password_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
    with open_session(ctx.settings) as session:
        try:
            create_admin(session=session, email=DEMO_ADMIN_EMAIL, name="Demo Admin", password=password)
            state = "created"
        except Conflict:
            state = "exists"
    ctx.facts["admin"] = (DEMO_ADMIN_EMAIL, password)
    return f"database migrated ({ctx.settings.sqlalchemy_url.split('://')[0]}); admin {DEMO_ADMIN_EMAIL} {state}"


def _features(ctx: DemoContext) -> str:
    from features.api import apply
    from pipelines.api import build_offline, materialize

    # Feast prints a banner per view while materializing; the demo prints one line per step instead.
    with contextlib.redirect_stdout(io.StringIO()):
        built = build_offline(settings=ctx.settings)
        apply()
        materialize()
    rows = sum(built["rows"].values()) if isinstance(built["rows"], dict) else built["rows"]
    return f"{rows:,} feature rows for {built['entities']['student_course']:,} registrations; online store materialized"


def _train_and_promote(ctx: DemoContext) -> str:
    from training.api import promote, train_risk

    run = train_risk(settings=ctx.settings)
    decision = promote("risk", settings=ctx.settings)
    ctx.facts["risk_version"] = decision.champion_version
    auc = run.version.metrics.get("auc_active")
    return (f"risk v{run.version.version} (held-out active AUC {auc:.3f}) registered; gate: "
            f"{decision.outcome.value}, champion is v{decision.champion_version}")


def _recommender(ctx: DemoContext) -> str:
    from recommender.cli import train_and_promote

    report = train_and_promote(settings=ctx.settings)  # the OULAD folder of the chosen data sets
    metrics = report["metrics"]
    gate = report["promotion"]
    if any(failure.startswith("beats_fallback") for failure in report.get("gate_failures", ())):
        gate += " (learners keep popularity within week until a ranker beats it)"
    return (f"recommender v{report['version']} (held-out {report['held_out']} NDCG@10 {metrics['ndcg_at_10']:.3f} "
            f"vs popularity within week {metrics['ndcg_at_10_popularity_recent']:.3f}); gate: {gate}")


def _catalog_courses(ctx: DemoContext, sources: list[str]) -> dict[str, uuid.UUID]:
    """One published, public platform course per catalog source, so search hits belong to real courses."""
    from sqlalchemy.exc import IntegrityError

    from learnloop.errors import Conflict
    from platform_api.api import create_courses, create_users, open_session
    from platform_api.data import NewCourse, NewUser, UserRole

    instructor = demo_id("instructor")
    courses = {source: catalog_course_id(source) for source in sources}
    with open_session(ctx.settings) as session:
        # A previous demo run (or another step) may have created either: each is created at most once.
        try:
            create_users(session=session, users=[NewUser(
                email="instructor@learnloop.example", name="Demo Instructor", role=UserRole.instructor,
                password=ctx.facts["admin"][1], id=instructor)])
        except (Conflict, IntegrityError):
            session.rollback()
        try:
            create_courses(session=session, courses=[NewCourse(
                title=f"{source.title()} catalog", description=f"Courses from the {source} catalog",
                instructor_id=instructor, id=course_id) for source, course_id in courses.items()])
        except (Conflict, IntegrityError):
            session.rollback()
    return courses


def _search_index(ctx: DemoContext) -> str:
    from learnloop.datasets import load_catalog
    from recommender.api import close_search_index, index_items
    from recommender.data import ContentItem

    catalog = load_catalog()
    courses = _catalog_courses(ctx, sorted(catalog["source"].unique()))
    items = [ContentItem(item_id=row.item_id, course_id=str(courses[row.source]), title=row.title,
                         body=row.description or "", kind="course", url=row.url)
             for row in catalog.itertuples()]
    indexed = index_items(items, settings=ctx.settings)
    close_search_index(ctx.settings)
    return f"{indexed:,} catalog items indexed (Qdrant local + BM25)"


def _essay_grader(ctx: DemoContext) -> str:
    from grading_nlp.api import train_essay_models

    summaries = train_essay_models(settings=ctx.settings)
    return f"{len(summaries)} per-prompt essay graders trained and exported to ONNX (parity checked)"


def _essay_review(ctx: DemoContext) -> str:
    """A course with an essay assignment on ASAP prompt 1 and three learners' essays, graded by the AI worker and
    waiting for the demo instructor on the review page (``/grading``)."""
    from learnloop.datasets import PROMPT_SCORE_RANGES, load_essays
    from learnloop.errors import Conflict
    from platform_api.api import (
        create_courses,
        create_essay_assignment,
        create_users,
        enroll_users,
        open_session,
        record_submissions,
    )
    from platform_api.data import NewCourse, NewEnrollment, NewSubmission, NewUser, UserRole

    prompt = 1
    low, high = PROMPT_SCORE_RANGES[prompt]
    password = ctx.facts["admin"][1]
    instructor = demo_id("instructor")
    course_id = ESSAY_COURSE_ID
    learners = list(ESSAY_LEARNER_IDS)
    essays = load_essays()
    sample = essays[(essays["essay_set"] == prompt) & (essays["fold"] == 0)].head(len(learners))
    with open_session(ctx.settings) as session:
        try:
            create_users(session=session, users=[NewUser(
                email="instructor@learnloop.example", name="Demo Instructor", role=UserRole.instructor,
                password=password, id=instructor)])
        except Conflict:
            session.rollback()  # the search-index step created the demo instructor
        try:
            create_users(session=session, users=[NewUser(
                email=f"learner{i + 1}@learnloop.example", name=f"Demo Learner {i + 1}", password=password, id=uid)
                for i, uid in enumerate(learners)])
        except Conflict:
            session.rollback()
            readings = _essay_readings(session, course_id)
            return ("essay review course exists (instructor@learnloop.example, learner1..3@learnloop.example)"
                    + (f"; {readings} readings added" if readings else ""))
        create_courses(session=session, courses=[NewCourse(
            title="Essay writing (AI-assisted grading)", instructor_id=instructor, id=course_id,
            description="Persuasive essays graded by an AI model of ASAP prompt 1 and reviewed by the instructor")])
        enroll_users(session=session, enrollments=[NewEnrollment(user_id=u, course_id=course_id) for u in learners])
        assessment_id, question_id = create_essay_assignment(
            session=session, course_id=course_id, title="Letter to the editor: computers and people",
            prompt="Write a letter to your local newspaper on the effects computers have on people.",
            essay_prompt=prompt, criteria=[
                {"name": "Ideas and evidence", "description": "A clear position supported by reasons", "points": 6},
                {"name": "Organisation and conventions", "description": "Structure, transitions, spelling",
                 "points": high - 6}])
        readings = _essay_readings(session, course_id)
        record_submissions(session=session, submissions=[NewSubmission(
            assessment_id=assessment_id, user_id=uid, answers={str(question_id): str(text)})
            for uid, text in zip(learners, sample["essay"], strict=False)])
    from grading_nlp.api import grade_pending_essays

    report = grade_pending_essays(settings=ctx.settings)
    return (f"essay course with {readings} readings and {report['suggested']} AI-suggested grades ({low}-{high} "
            "scale) for instructor@learnloop.example to review at /staff/courses")


ESSAY_READINGS = (
    ("How to structure a persuasive letter",
     "Open with your position, give one reason per paragraph with an example, answer the strongest objection, "
     "and close by asking the reader to act."),
    ("Using evidence: facts, examples and reasons",
     "A claim persuades when it is backed: a fact or figure, an example from experience, and the reason that "
     "links them to your position."),
    ("Transitions that guide the reader",
     "Words such as first, moreover, however and in conclusion show how each paragraph relates to the last."),
)
ESSAY_READING_IDS = tuple(demo_id(f"essay-reading/{i}") for i in range(len(ESSAY_READINGS)))


def _essay_readings(session, course_id: uuid.UUID) -> int:
    """Three readings in the essay course, so a demo learner has content to open, get recommendations for and
    find by search (the content indexer beside the served API indexes them). Created once: returns how many were
    added (0 when a previous run added them)."""
    from sqlalchemy.exc import IntegrityError

    from platform_api.api import create_content_items
    from platform_api.data import NewContent

    items = [NewContent(course_id=course_id, title=title, body=body, id=reading_id)
             for reading_id, (title, body) in zip(ESSAY_READING_IDS, ESSAY_READINGS, strict=True)]
    try:
        create_content_items(session=session, items=items)
    except IntegrityError:
        session.rollback()
        return 0
    return len(items)


def _interventions(ctx: DemoContext) -> str:
    """A course for the demo instructor linked to the latest presentation of the first OULAD module (its still
    registered learners enrolled), then the interventions job over every active enrollment: alerts to act on at
    ``/staff/courses/{id}/alerts``. Users and the course already linked to those OULAD ids (``learnloop data import
    oulad``: ``metadata.id_student`` / ``metadata.presentation``) are reused, so no student exists twice."""
    from learnloop.errors import Conflict
    from pipelines.api import risk_label_frame
    from pipelines.interventions.api import run_interventions
    from platform_api.api import (
        create_courses,
        create_users,
        enroll_users,
        enrollment_status_of,
        grant_course_role,
        linked_oulad_records,
        open_session,
    )
    from platform_api.data import NewCourse, NewEnrollment, NewUser

    registrations = risk_label_frame(weeks=["end"])
    latest = registrations.sort_values(["code_module", "code_presentation"]).groupby("code_module").tail(1)
    presentation = str(latest.iloc[0]["course"])
    current = registrations[(registrations["course"] == presentation) & registrations["active"]]
    instructor = demo_id("instructor")
    students = sorted({int(s) for s in current["id_student"]})
    with open_session(ctx.settings) as session:
        linked, course_id = linked_oulad_records(session=session, id_students=students, presentation=presentation)
        imported_course = course_id is not None
        if course_id is None:
            course_id = demo_id(f"at-risk/{presentation}")
            create_courses(session=session, courses=[NewCourse(
                title=f"Module {presentation} (at-risk alerts)", instructor_id=instructor, id=course_id,
                description=f"The learners of OULAD presentation {presentation} still registered at its end",
                metadata={"presentation": presentation})])
        else:
            grant_course_role(session=session, user_id=instructor, course_id=course_id)  # staff of the import
        missing = {s: demo_id(f"oulad-learner/{s}")
                   for s in students if s not in linked}
        if missing:
            create_users(session=session, users=[NewUser(
                email=f"oulad-{s}@learners.example", name=f"OULAD learner {s}", metadata={"id_student": s}, id=u)
                for s, u in missing.items()])
        learners = {**linked, **missing}
        new = [u for u in learners.values()
               if enrollment_status_of(session, user_id=u, course_id=course_id) is None]
        try:
            if new:
                enroll_users(session=session, enrollments=[NewEnrollment(user_id=u, course_id=course_id) for u in new])
        except Conflict:
            session.rollback()  # a previous demo run enrolled them
    # The import records finished presentations as history (completed/dropped): replay that course's completed
    # enrollments too, as the job's --include-completed does.
    summary = run_interventions(settings=ctx.settings, course_id=course_id if imported_course else None,
                                include_completed=imported_course)
    reused = (f"; reused {len(linked):,} already linked learners" if linked else "") + (
        f" and the course already linked to {presentation}" if imported_course else "")
    return (f"{summary.scored:,} active enrollments scored with risk v{summary.model_version}, "
            f"{summary.alerts_raised:,} alerts raised (risk ≥ {summary.threshold}), "
            f"{summary.suppressed_by_cooldown:,} in cooldown{reused}; instructor@learnloop.example acts on them at "
            f"/staff/courses/{course_id}/alerts")


STEPS: list[tuple[str, Callable[[DemoContext], str]]] = [
    ("data", _use_datasets),
    ("platform", _platform),
    ("features", _features),
    ("train + promote", _train_and_promote),
    ("recommender", _recommender),
    ("search index", _search_index),
    ("essay grader", _essay_grader),
    ("essay review", _essay_review),
    ("interventions", _interventions),
]


def _require_free_ports(settings: Settings) -> None:
    """Both addresses must be free before the services start: with another server there (another engineer's demo
    on 8000), the readiness checks got its answers, and the demo reported 'started and answered' while its own API
    had failed to bind."""
    from learnloop.errors import Conflict
    from serving.api import require_free_port

    for host, port, variable in ((settings.serving_host, settings.serving_port, "LEARNLOOP_SERVING_PORT"),
                                 (settings.api_host, settings.api_port, "LEARNLOOP_API_PORT")):
        try:
            require_free_port(host, port, how_to_change=f"{variable}=…")
        except Conflict as exc:
            raise SystemExit(exc.message) from None


def _start_services(ctx: DemoContext) -> list[subprocess.Popen]:
    from serving.api import start_model_service, wait_until_ready

    _require_free_ports(ctx.settings)
    logs = ctx.settings.data_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model_service = start_model_service(settings=ctx.settings, log_path=logs / "model-service.log")
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "learnloop.asgi:create_platform_app", "--factory",
         "--host", ctx.settings.api_host,
         "--port", str(ctx.settings.api_port), "--log-level", "warning", "--no-access-log"],
        stdout=(logs / "platform-api.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(ctx.settings.serving_url, timeout=180, process=model_service)
        _wait_http(f"http://{ctx.settings.api_host}:{ctx.settings.api_port}/openapi.json", api)
    except BaseException:  # a failed start, Ctrl-C or SIGTERM while waiting: nothing is left serving
        _stop_services([model_service, api])
        raise
    return [model_service, api]


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} did not start (exit {process.returncode}); see the logs under the data dir")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def _stop_services(processes: list[subprocess.Popen]) -> None:
    from serving.api import stop_model_service

    model_service, api = processes
    api.terminate()
    try:
        api.wait(timeout=20)
    except subprocess.TimeoutExpired:
        api.kill()
    stop_model_service(model_service)


def run_demo(*, serve: bool = True, synthetic: bool = False) -> None:
    """Run every step, printing a line each; then serve until Ctrl-C or SIGTERM (or, with serve=False, check and
    stop)."""
    from learnloop.shutdown import sigterm_as_interrupt

    with sigterm_as_interrupt():
        _run_demo(serve=serve, synthetic=synthetic)


def _run_demo(*, serve: bool, synthetic: bool) -> None:
    settings = get_settings()
    settings.ensure_dirs()
    ctx = DemoContext(settings=settings, synthetic=synthetic)
    total = time.perf_counter()
    for name, step in STEPS:
        started = time.perf_counter()
        with console.status(f"[bold]{name}[/bold] …"):
            summary = step(ctx)
        console.print(f"[green]✓[/green] [bold]{name}[/bold] ({time.perf_counter() - started:.1f} s): {summary}")
    from pipelines.monitoring.cli import record_registry_snapshot

    record_registry_snapshot(settings=ctx.settings)  # the operator page shows the champions the demo promoted
    console.print(f"[bold]loop set up in {time.perf_counter() - total:.0f} s[/bold]; starting the services …")
    processes = _start_services(ctx)
    api_url = f"http://{ctx.settings.api_host}:{ctx.settings.api_port}"
    email, password = ctx.facts["admin"]
    headline = "learnloop is running" if serve else "learnloop started and answered (stopping: --no-serve)"
    console.print(
        f"\n[bold]{headline}[/bold]\n"
        f"  platform API docs   {api_url}/docs\n"
        f"  model service       {ctx.settings.serving_url}\n"
        f"  log in              POST {api_url}/api/v1/auth/login  ({email} / {password})\n"
        f"  staff pages         {api_url}/staff/courses  (instructor@learnloop.example, same password)\n"
        f"  operator page       {api_url}/operator  (the admin: models, drift, service health)\n"
        f"  data dir            {ctx.settings.data_path}\n")
    try:
        if serve:
            console.print("Ctrl-C (or SIGTERM) stops both services.")
            if not _serve_until_stopped(processes):
                raise SystemExit("a service stopped; see the logs under the data dir")
    except KeyboardInterrupt:
        pass
    finally:
        _stop_services(processes)


def _serve_until_stopped(processes: list[subprocess.Popen], poll_seconds: float = 1.0) -> bool:
    """Wait while every service runs: True when stopped on request (Ctrl-C, SIGTERM), False when a service exited.
    SIGTERM is also read from a flag, not only from the KeyboardInterrupt its handler raises: once that exception
    was lost, and `kill` left the demo and both services running."""
    from learnloop.shutdown import stop_requested

    while all(p.poll() is None for p in processes):
        if stop_requested():
            return True
        time.sleep(poll_seconds)
    return stop_requested()
