"""`learnloop data …`: check the data sets and generate synthetic look-alikes."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True)


def check(
    root: Path | None = typer.Option(None, "--root", help="Folder with the data sets (default: LEARNLOOP_DATASETS_DIR)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Validate every data set found (schema, types, row counts) and print its row counts."""
    from learnloop.datasets import check_datasets, datasets_root
    from learnloop.errors import Unavailable

    try:
        folder = root or datasets_root()
    except Unavailable as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    report = check_datasets(Path(folder))
    if as_json:
        typer.echo(json.dumps(report))
    else:
        table = Table(title=f"data sets in {folder}")
        for column in ("data set", "status", "rows"):
            table.add_column(column)
        for name, entry in report["datasets"].items():
            rows = ", ".join(f"{k}={v:,}" for k, v in entry.get("rows", {}).items())
            table.add_row(name, entry["status"], rows or entry.get("error", ""))
        Console().print(table)
    if not report["ok"]:
        if "error" in report:
            err.print(f"error: {report['error']}", highlight=False, soft_wrap=True)
        for entry in report["datasets"].values():
            if entry["status"] == "invalid":
                err.print(f"error: {entry['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def synth(
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: <data dir>/synth)."),
    students: int = typer.Option(120, min=10, help="Learners per module-presentation (at least 10)."),
    essays: int = typer.Option(160, help="Essays per prompt."),
    seed: int = typer.Option(7),
) -> None:
    """Generate OULAD-, ASAP-, BEIR- and catalog-shaped data with real signal (same layout as the real data)."""
    from learnloop.datasets import write_synthetic
    from learnloop.settings import get_settings

    target = out or get_settings().data_path / "synth"
    with err.status(f"writing synthetic data to {target}"):
        written = write_synthetic(target, seed=seed, students_per_presentation=students, essays_per_prompt=essays)
    for name, path in written.items():
        err.print(f"  {name}: {path}")
    typer.echo(str(target))


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    groups["data"].command("check")(check)
    groups["data"].command("synth")(synth)
