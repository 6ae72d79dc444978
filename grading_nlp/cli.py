"""Commands this package adds to the `learnloop` CLI (heavy imports stay inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _progress():
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


def eval_essays(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object to stdout."),
    data: Path | None = typer.Option(None, "--data", help="An ASAP-format TSV (default: the shared ASAP-AES)."),
    cold_start: bool = typer.Option(True, "--cold-start/--no-cold-start", help="Also measure 50-essay models."),
) -> None:
    """QWK of the per-prompt essay graders on the NEA 5-fold split, plus the 50-essay cold start."""
    from grading_nlp.api import evaluate_essays

    with _progress() as progress:
        task = progress.add_task("essays", total=None)
        report = evaluate_essays(data, cold_start=cold_start,
                                 advance=lambda what: progress.update(task, description=what))
    if json_output:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"average QWK {report['avg_qwk']:.4f} (cold start, 50 essays: {report['cold_start_avg_qwk']})")
    for prompt, value in report["qwk_by_prompt"].items():
        typer.echo(f"  prompt {prompt}: {value:.4f}")


def train_essays(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object to stdout."),
    data: Path | None = typer.Option(None, "--data", help="An ASAP-format TSV (default: the shared ASAP-AES)."),
    prompt: list[int] | None = typer.Option(None, "--prompt", help="Only these prompts (repeatable)."),
    register: bool = typer.Option(False, "--register", help="Also register each head in MLflow as challenger."),
    with_platform_labels: bool = typer.Option(
        False, "--with-platform-labels",
        help="Add every instructor decision (accepted/overridden AI grade) from the platform to the training folds."),
) -> None:
    """Train and save one essay grader per prompt (ONNX head, parity checked) for `grade_essay`."""
    from grading_nlp.api import train_essay_models

    if with_platform_labels:
        data = _with_platform_labels(data)
    with _progress() as progress:
        task = progress.add_task("train essays", total=None)
        summaries = train_essay_models(data, prompts=prompt or None, register=register,
                                       advance=lambda what: progress.update(task, description=what))
    if prompt and not summaries:  # asked for prompts the data does not hold: nothing was trained
        typer.echo(f"error: no essays of prompt(s) {', '.join(map(str, prompt))} in the data; nothing was trained",
                   err=True)
        raise typer.Exit(1)
    if json_output:
        typer.echo(json.dumps({"models": summaries}))
        return
    for summary in summaries:
        typer.echo(json.dumps(summary))


def _with_platform_labels(data: Path | None) -> Path:
    """The corpus plus the platform's labelled essays, as a TSV under the cache dir."""
    import csv

    from grading_nlp._platform_labels import with_platform_labels
    from learnloop.datasets import load_essays
    from learnloop.settings import get_settings

    settings = get_settings()
    combined = with_platform_labels(load_essays(data), settings)
    path = settings.cache_dir / "grading_nlp" / "essays-with-platform-labels.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    combined.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return path


def grading_work(
    once: bool = typer.Option(False, "--once", help="One pass over the due jobs, then exit."),
    poll: float = typer.Option(2.0, "--poll", min=0.1, help="Seconds to wait when the queue is empty."),
    json_output: bool = typer.Option(False, "--json", help="Print the totals as one JSON object."),
) -> None:
    """Grade the platform's queued essay submissions (retrying failures with backoff) until Ctrl-C."""
    import threading

    from grading_nlp.api import run_grading_worker

    stop = threading.Event()
    try:
        totals = run_grading_worker(once=once, poll_seconds=poll, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        return
    typer.echo(json.dumps(totals) if json_output else
               ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in totals.items()))


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["eval"].command("essays")(eval_essays)
    groups["train"].command("essays")(train_essays)
    grading = typer.Typer(help="AI-assisted essay grading: the worker that grades queued submissions.",
                          no_args_is_help=True)
    grading.command("work")(grading_work)
    root.add_typer(grading, name="grading")
