"""`learnloop drift …`: drift checks of the served models (heavy imports stay inside the command)."""

from __future__ import annotations

import json
import logging
from typing import Any

import typer

log = logging.getLogger(__name__)
# Keys printed per model by `drift check --json` (the contract first).
_JSON_KEYS = ("drift_detected", "drifted_features", "share", "report_html", "report_json", "prediction_drift",
              "performance", "n_reference", "n_current", "skipped_features", "trigger_reasons")


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add ``drift check`` and ``drift status`` to the ``drift`` group."""
    groups["drift"].command("check")(check)
    groups["drift"].command("status")(status)


def check(
    model: list[str] | None = typer.Option(
        None, "--model", "-m", help="Model(s) to check (repeat the option). Default: every registered model with a "
        "champion and every essay grader saved for serving; with presentations, the champions trained on a "
        "FeatureService (risk)."),
    reference_presentations: str | None = typer.Option(
        None, help="Compare OULAD presentations directly: reference, e.g. '2013J' or 'AAA-2013J,BBB-2013J'."),
    current_presentations: str | None = typer.Option(None, help="Current presentations, e.g. '2014J'."),
    weeks: str = typer.Option("5,10,15,end", help="Label weeks of the risk rows (presentation mode and the "
                              "reference fallback)."),
    days: float = typer.Option(7.0, help="Current window: the last N days of the prediction log."),
    min_rows: int = typer.Option(50, min=1, help="Skip a model with fewer predictions logged in the window (a few "
                                 "rows flag noise as drift)."),
    drift_share: float = typer.Option(0.5, help="Dataset drift when at least this share of features drifts."),
    performance_drop: float = typer.Option(0.05, help="Retrain when AUC/QWK fell by more than this."),
    max_rows: int = typer.Option(20_000, help="Sample each window down to this many rows."),
    retrain: bool = typer.Option(True, "--retrain/--no-retrain", help="Let drift trigger retraining + the gate "
                                 "(prediction-log mode only; presentation comparisons never retrain)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object to stdout."),
) -> None:
    """Compare each model's reference window (the champion's training data) with its current window (the
    prediction log), save Evidently HTML/JSON reports and, on drift, retrain and run the promotion gate.

    Every model's outcome is recorded for `drift status` and /operator: checked, skipped (nothing logged to
    compare yet) or failed with its reason. Exits with status 1 when any check failed, so a scheduler notices."""
    from rich.console import Console

    from learnloop.settings import get_settings
    from pipelines.monitoring import _windows

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    err = Console(stderr=True)
    settings = get_settings()
    settings.ensure_dirs()
    week_list: list[int | str] = [int(w) if w.strip().isdigit() else w.strip() for w in weeks.split(",")]
    compare = reference_presentations is not None or current_presentations is not None
    if compare and not (reference_presentations and current_presentations):
        raise typer.BadParameter("give both --reference-presentations and --current-presentations")
    if model:
        names = list(model)
        try:
            unknown = _windows.unknown_models(names, settings)
        except Exception as exc:  # noqa: BLE001 - registry unreachable: each named check fails and is recorded
            err.print(f"[yellow]the model names were not checked: the registry did not answer ({_reason(exc)})[/yellow]")
            unknown = []
        if unknown:
            raise typer.BadParameter(f"no model {', '.join(map(repr, unknown))} to check: name a registered model "
                                     "(`learnloop models list`) or an essay grader (essay_grader_p<prompt>)",
                                     param_hint="--model")
    else:
        try:
            names = _windows.presentation_models(settings) if compare else _windows.served_models(settings)
        except Exception as exc:  # noqa: BLE001 - registry unreachable or broken: say so and fail the run
            log.exception("cannot list the served models")
            err.print(f"[red]drift check: cannot list the models to check ({_reason(exc)}); "
                      "name them with --model[/red]")
            raise typer.Exit(code=1) from exc
    out: dict[str, Any] = {"models": {}}
    if compare:
        out["reference"] = reference_presentations
        out["current"] = current_presentations
    for name in names:
        out["models"][name] = _check_or_record(
            name, settings=settings, err=err, compare=compare, reference_presentations=reference_presentations,
            current_presentations=current_presentations, weeks=week_list, days=days, min_rows=min_rows,
            drift_share=drift_share,
            performance_drop=performance_drop, max_rows=max_rows, retrain=retrain and not compare)
    if not compare:
        _record_registry(settings, err)
    if as_json:
        typer.echo(json.dumps(out, default=str))
    else:
        _print_table(out, Console())  # the result on stdout (a pipe or a file gets it); progress stays on stderr
    failed = [name for name, row in out["models"].items() if row["status"] == "failed"]
    if failed:
        err.print(f"[red]drift check failed for {', '.join(failed)}[/red]")
        raise typer.Exit(code=1)


def _check_or_record(name: str, *, settings, err, compare: bool, **options) -> dict[str, Any]:
    """One model's check as its output row; a skipped or failed check is recorded (prediction-log mode: a
    presentation comparison is an analysis, not the model's monitoring) with the reason operators need."""
    from learnloop.errors import LearnloopError
    from pipelines.monitoring._windows import NothingToCheck
    from pipelines.monitoring.api import CheckOutcome, record_unchecked

    try:
        with err.status(f"drift check {name}…"):
            return {"status": CheckOutcome.checked.value,
                    **_check_one(name, settings=settings, compare=compare, **options)}
    except NothingToCheck as exc:
        outcome, row = CheckOutcome.skipped, {"status": CheckOutcome.skipped.value, "reason": exc.message}
    except Exception as exc:  # noqa: BLE001 - one model's failure is recorded and reported; the others still run
        if not isinstance(exc, LearnloopError):
            log.exception("drift check of %s failed", name)
        outcome, row = CheckOutcome.failed, {"status": CheckOutcome.failed.value, "error": _reason(exc)}
    if not compare:
        record_unchecked(name, outcome, row.get("reason") or row["error"], settings=settings)
    return row


def _reason(exc: Exception) -> str:
    from learnloop.errors import LearnloopError

    return exc.message if isinstance(exc, LearnloopError) else f"{type(exc).__name__}: {exc}"


def _check_one(name: str, *, settings, compare: bool, reference_presentations, current_presentations, weeks,
               days, min_rows, drift_share, performance_drop, max_rows, retrain: bool) -> dict[str, Any]:
    from pipelines.monitoring import _loop, _windows
    from pipelines.monitoring.api import check_drift, handle_drift

    if compare:
        reference = _windows.presentations_window(reference_presentations.split(","), weeks=weeks,
                                                  settings=settings, model_name=name)
        current = _windows.presentations_window(current_presentations.split(","), weeks=weeks,
                                                settings=settings, model_name=name)
    else:
        # The log first: it is cheap, and a model with nothing logged is skipped before its reference is built.
        current = _windows.prediction_log_window(name, settings=settings, days=days, min_rows=min_rows)
        reference = _windows.champion_reference(name, settings=settings, weeks=weeks)
        current = _windows.answered_by(current, reference.version, min_rows=min_rows)
        reference = _windows.match_course_mix(reference, current)
    features = [f for f in reference.features if f in set(current.features)]
    result = check_drift(name, reference.frame, current.frame, features=features,
                         categorical_features=reference.categorical, drift_share=drift_share,
                         performance_drop=performance_drop, max_rows=max_rows, settings=settings)
    summary = result.summary()
    payload: dict[str, Any] = {key: summary[key] for key in _JSON_KEYS}
    payload["windows"] = {"reference": reference.description, "current": current.description}
    if retrain:
        outcome = handle_drift(result, retrain=_loop.training_retrain(settings),
                               promote=_loop.training_promote(settings), settings=settings)
        payload["retraining"] = None if outcome is None else outcome.to_dict()
    return payload


def _record_registry(settings, err) -> None:
    from learnloop.errors import LearnloopError

    try:
        record_registry_snapshot(settings=settings)
    except (LearnloopError, OSError) as exc:  # the check itself succeeded; the page keeps its older snapshot
        err.print(f"[yellow]registry snapshot not updated: {exc}[/yellow]")


def record_registry_snapshot(*, settings=None) -> None:
    """Record the registry as it is now for the operator page, which shows aliases from this snapshot (the platform
    API does not read MLflow): ``learnloop drift check``, ``learnloop promote``, ``learnloop models rollback`` and
    the demo call it after reading or changing the registry, so /operator is not older than their last change."""
    from learnloop.settings import get_settings
    from pipelines.monitoring import _loop
    from pipelines.monitoring.api import record_registry

    settings = settings or get_settings()
    record_registry(_loop.registry_models(settings), settings=settings)


def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object to stdout.")) -> None:
    """The latest drift status per model as recorded by the last checks: how the latest check ended (checked,
    skipped or failed, when, why) and the last drift report."""
    from rich.console import Console

    from pipelines.monitoring.api import latest_status

    models = {name: {key: summary.get(key) for key in (*_JSON_KEYS, "checked_at", "last_check")}
              for name, summary in latest_status().items()}
    if as_json:
        typer.echo(json.dumps({"models": models}, default=str))
    elif not models:
        Console(stderr=True).print("no drift check recorded yet: run `learnloop drift check` (or, before any "
                                   "traffic, `learnloop drift check --reference-presentations 2013J "
                                   "--current-presentations 2014J`)")
    else:
        _print_table({"models": models}, Console())


def _print_table(out: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title="drift")
    for column in ("model", "check", "reason", "drift", "share", "drifted features", "prediction drift"):
        table.add_column(column)
    table.add_column("report", overflow="fold")  # the path in full: it is what the operator opens next
    for name, row in out["models"].items():
        last = row.get("last_check") or {}  # `drift status` rows; `drift check` rows carry their own status
        check = row.get("status") or f"{last.get('outcome', '')} {last.get('at', '')}".strip()
        reason = row.get("error") or row.get("reason") or last.get("reason") or ""
        report = [] if row.get("drift_detected") is None else [
            str(row["drift_detected"]), f"{row['share']:.2f}", _first(row["drifted_features"]),
            str(row["prediction_drift"]), str(row["report_html"])]
        table.add_row(name, check, reason, *(report or [""] * 5))
    console.print(table)


def _first(features: list[str], shown: int = 6) -> str:
    """The first drifted features and how many more (the table listed all, up to 88 lines per model; the report
    and --json have every one)."""
    more = len(features) - shown
    return ", ".join(features[:shown]) + (f" … (+{more} more)" if more > 0 else "")
