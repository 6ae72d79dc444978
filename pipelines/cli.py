"""Commands this package adds to the `learnloop` CLI (heavy imports stay inside the commands)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import typer


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["features"].command("build")(features_build)
    groups["features"].command("materialize")(features_materialize)
    groups["features"].command("bench")(features_bench)
    groups["features"].command("ingest")(features_ingest)
    importer = typer.Typer(help="Load a data set into the platform database.", no_args_is_help=True)
    importer.command("oulad")(data_import_oulad)
    groups["data"].add_typer(importer, name="import")


def _emit(payload: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    else:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(payload))


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=False)


def _materialize_with_progress(store) -> dict:
    from pipelines.api import materialize

    bar = _progress()
    task = None

    def step(view: str, done: int, total: int) -> None:
        nonlocal task
        if task is None:  # shown once materializing starts: a refusal (nothing built yet) is its one error line
            bar.start()
            task = bar.add_task("materialize", total=None)
        bar.update(task, total=total, completed=done, description=f"materialize {view}".strip())

    try:
        with contextlib.redirect_stdout(sys.stderr):  # Feast prints; stdout stays JSON-only
            return materialize(store=store, progress=step)
    finally:
        if task is not None:
            bar.stop()


def _import_with_progress(*, presentations: list[str] | None, oulad_dir: Path | None = None) -> dict:
    from learnloop.datasets import load_oulad
    from pipelines.api import import_oulad

    tables = load_oulad(oulad_dir)
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def step(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"import {name}", total=total or None)
            bar.update(tasks[name], total=total or None, completed=done)

        return import_oulad(tables=tables, presentations=presentations, progress=step)


def _split(presentations: str | None) -> list[str] | None:
    return [p.strip() for p in presentations.split(",") if p.strip()] if presentations else None


def data_import_oulad(
    oulad_dir: Path = typer.Option(None, "--oulad-dir", help="OULAD folder (default: the datasets dir)."),
    presentations: str = typer.Option(None, "--presentations", help="Comma-separated, e.g. AAA-2013J,BBB-2013B."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Load OULAD into the platform: courses, students + enrollments, content, assessments + submissions,
    clicks as lms.analytics.events (one per student/site/day). Idempotent: a second run adds nothing."""
    from learnloop.errors import LearnloopError

    try:
        report = _import_with_progress(presentations=_split(presentations), oulad_dir=oulad_dir)
    except LearnloopError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(2) from exc
    _emit(report, as_json)


def features_build(
    oulad_dir: Path = typer.Option(None, "--oulad-dir", help="OULAD folder (default: the datasets dir)."),
    presentations: str = typer.Option(None, "--presentations", help="Comma-separated, e.g. AAA-2013J,BBB-2013B."),
    with_import: bool = typer.Option(False, "--with-import", help="First load OULAD into the platform database "
                                     "(`learnloop data import oulad`) and time it."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Compute point-in-time features from OULAD into the parquet sources, apply the repo, materialize."""
    from learnloop.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # process CPU seconds per phase: what a phase costs on a shared machine
    imported = None
    if with_import:
        started, started_cpu = time.perf_counter(), time.process_time()
        imported = _import_with_progress(presentations=_split(presentations), oulad_dir=oulad_dir)
        timings["import_s"], cpu["import_s"] = time.perf_counter() - started, time.process_time() - started_cpu
    started, started_cpu = time.perf_counter(), time.process_time()
    from learnloop.datasets import load_oulad

    tables = load_oulad(oulad_dir)
    timings["load_s"], cpu["load_s"] = time.perf_counter() - started, time.process_time() - started_cpu
    started_cpu = time.process_time()
    from pipelines.api import build_offline

    wanted = [p.strip() for p in presentations.split(",")] if presentations else None
    offline = build_offline(tables=tables, settings=settings, presentations=wanted)
    timings["offline_build_s"] = offline["timings"]["compute_s"] + offline["timings"]["write_s"]
    cpu["offline_build_s"] = time.process_time() - started_cpu
    started, started_cpu = time.perf_counter(), time.process_time()
    from features.api import apply, feature_names, get_store, service_names, view_features, view_names

    store = get_store(settings)
    applied = apply(store)
    timings["apply_s"], cpu["apply_s"] = time.perf_counter() - started, time.process_time() - started_cpu
    started, started_cpu = time.perf_counter(), time.process_time()
    _materialize_with_progress(store)
    timings["materialize_s"] = time.perf_counter() - started
    cpu["materialize_s"] = time.process_time() - started_cpu
    payload = {
        "rows": {**offline["rows"], "total": int(sum(offline["rows"].values()))},
        "entities": offline["entities"],
        "features": {"views": {v: len(view_features(v)) for v in view_names()},
                     "services": {s: len(feature_names(s)) for s in service_names()},
                     "total": int(sum(len(view_features(v)) for v in view_names()))},
        "applied": applied,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "cpu_timings": {k: round(v, 2) for k, v in cpu.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if imported is not None:
        payload["import"] = imported
    _emit(payload, as_json)


def features_materialize(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Materialize source rows newer than the last run into the online store (incremental). Fails (exit 1) on a
    store that was never built: run `learnloop features build` first."""
    from features.api import get_store

    report = _materialize_with_progress(get_store())
    _emit({"materialized": report}, as_json)


def features_bench(
    service: str = typer.Option("student_risk_v1", "--service", help="FeatureService to read."),
    repeats: int = typer.Option(2000, "--repeats", min=1, help="Reads per batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Online read latency through the FeatureService: p50/p99 for 1 and 100 entities."""
    from pipelines._bench import bench_online

    _emit(bench_online(service=service, repeats=repeats), as_json)


def features_ingest(
    events_file: Path = typer.Argument(..., help="JSON lines of lms.analytics.events envelopes."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Turn activity events into the offline sources; garbage is quarantined with a reason (idempotent)."""
    from pipelines.api import ingest_events

    lines = [line for line in events_file.read_text().splitlines() if line.strip()]
    _emit(ingest_events(lines), as_json)
