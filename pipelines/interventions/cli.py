"""`learnloop interventions …`: the scheduled at-risk job and the label export (heavy imports inside commands)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import typer


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["interventions"].command("run")(run)
    groups["interventions"].command("labels")(labels)


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the run summary)."),
    threshold: float = typer.Option(0.7, "--threshold", min=0.0, max=1.0, help="Alert at risk ≥ this."),
    course: str = typer.Option(None, "--course", help="Only this platform course (its UUID)."),
    cooldown_days: int = typer.Option(7, "--cooldown-days", min=0, max=365,
                                      help="No new alert for an enrollment within this many days of its last …"),
    margin: float = typer.Option(0.10, "--margin", min=0.0, max=1.0,
                                 help="… unless its risk rose by at least this much since."),
    include_completed: bool = typer.Option(False, "--include-completed",
                                           help="Also score completed enrollments (replaying a finished term)."),
    no_recommend: bool = typer.Option(False, "--no-recommend", help="Do not ask the recommender for content."),
) -> None:
    """Score every active enrollment with the champion risk model and raise explained at-risk alerts."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from learnloop.errors import LearnloopError
    from learnloop.settings import get_settings
    from pipelines.interventions.api import InterventionPolicy, run_interventions

    try:
        course_id = uuid.UUID(course) if course else None
    except ValueError:
        _fail(f"--course {course!r} is not a course id (a UUID; list courses with GET /api/v1/courses)")
    settings = get_settings()
    settings.ensure_dirs()
    policy = InterventionPolicy(threshold=threshold, cooldown_days=cooldown_days, rearm_margin=margin)
    started = time.perf_counter()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    tasks: dict[str, int] = {}

    def step(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done, total=total)

    try:
        with bar:
            summary = run_interventions(settings=settings, policy=policy, course_id=course_id,
                                        include_completed=include_completed, progress=step,
                                        recommend=None if no_recommend else True)
    except LearnloopError as exc:
        _fail(exc.message)
    payload = summary.to_dict()
    payload["seconds"]["total"] = round(time.perf_counter() - started, 3)
    if as_json:
        sys.stdout.write(json.dumps(payload, default=str) + "\n")
    else:
        from rich.pretty import Pretty

        Console().print(Pretty(payload))


def labels(
    out: Path = typer.Option(None, "--out", help="Write the labels here (.parquet, or .csv)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Export staff outcomes on resolved alerts as labels for the next training run."""
    from learnloop.settings import get_settings
    from pipelines.interventions.api import export_outcome_labels

    settings = get_settings()
    target = out or settings.data_path / "interventions" / "alert_labels.parquet"
    frame = export_outcome_labels(settings=settings, out=target)
    payload = {"labels": len(frame), "path": str(target),
               "by_outcome": {str(k): int(v) for k, v in frame["outcome"].value_counts().items()}}
    sys.stdout.write(json.dumps(payload) + "\n") if as_json else typer.echo(json.dumps(payload, indent=2))
