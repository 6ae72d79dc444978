"""Commands this package adds to the `learnloop` CLI (heavy imports stay inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from training.data import Learner


def _progress():
    """A spinner on stderr; returns (context manager, callback taking a message)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task("starting", total=None)
    return progress, lambda message: progress.update(task, description=message)


def _frame(training_set: Path | None):
    import pandas as pd

    return pd.read_parquet(training_set) if training_set else None


def _exit_on_domain_error(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2) from exc


def train_risk(
    learner: Learner = typer.Option(Learner.hgb, help="hgb (HistGradientBoosting) or logreg (baseline)."),
    max_iter: int = typer.Option(300, help="Boosting iterations (hgb) with --fixed-capacity."),
    select_capacity: bool = typer.Option(True, "--select-capacity/--fixed-capacity",
                                         help="Choose the hgb capacity by leave-one-presentation-out on the "
                                              "training presentations (or use --max-iter as given)."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register the version as challenger."),
    training_set: Path | None = typer.Option(None, help="Parquet of a built risk training set (skips Feast)."),
    feature_service: str = typer.Option("student_risk_v2", help="FeatureService to train on (recorded with the model)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train the at-risk model (train 2013B/2013J/2014B, hold out 2014J), log it and register it as challenger."""
    from learnloop.errors import LearnloopError
    from training._risk import CAPACITY_GRID, RiskRecipe
    from training.api import train_risk as run_training

    progress, say = _progress()
    try:
        with progress:
            run = run_training(frame=_frame(training_set), recipe=RiskRecipe(learner=Learner(learner), max_iter=max_iter,
                                                                               feature_service=feature_service,
                                                                               capacity_grid=CAPACITY_GRID if select_capacity else ()),
                               register=register, progress=say)
    except LearnloopError as exc:
        _exit_on_domain_error(exc)
    payload = {"model": "risk", "version": run.version.version if run.version else None,
               "aliases": run.version.aliases if run.version else [],
               "auc_active": run.evaluation["auc_active"], "auc_active_by_week": run.evaluation["auc_active_by_week"],
               "ece_active": run.evaluation["ece_active"], "onnx_parity_max_abs_diff": run.parity_max_abs_diff}
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        # --no-register trains and evaluates only: there is no version to name.
        registered = (f"risk v{payload['version']} ({', '.join(payload['aliases']) or 'no alias'})"
                      if payload["version"] else "risk (not registered: --no-register)")
        by_week = ", ".join(f"{week} {auc}" for week, auc in payload["auc_active_by_week"].items())
        typer.echo(f"{registered}: active AUC {payload['auc_active']} (by week: {by_week}), "
                   f"ECE {payload['ece_active']}")


def eval_risk(
    learner: Learner = typer.Option(Learner.hgb, help="hgb (HistGradientBoosting) or logreg (baseline)."),
    training_set: Path | None = typer.Option(None, help="Parquet of a built risk training set (skips Feast)."),
    feature_service: str = typer.Option("student_risk_v2", help="FeatureService to evaluate (v1 for comparison)."),
    select_capacity: bool = typer.Option(True, "--select-capacity/--fixed-capacity",
                                         help="Choose the hgb capacity by leave-one-presentation-out on the "
                                              "training presentations (or use the recipe's defaults)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The at-risk protocol on OULAD: AUC by week (all, active, with clicks on AAA 2014J) and Brier."""
    from learnloop.errors import LearnloopError
    from training._risk import CAPACITY_GRID, RiskRecipe
    from training.api import evaluate_risk

    progress, say = _progress()
    try:
        with progress:
            result = evaluate_risk(frame=_frame(training_set), recipe=RiskRecipe(learner=Learner(learner),
                                                                                   feature_service=feature_service,
                                                                                   capacity_grid=CAPACITY_GRID if select_capacity else ()),
                                   progress=say)
    except LearnloopError as exc:
        _exit_on_domain_error(exc)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def promote(
    model: str = typer.Argument(..., help="Registered model name, e.g. risk."),
    force: bool = typer.Option(False, "--force", help="Move champion even if the gate fails (needs --reason)."),
    reason: str | None = typer.Option(None, "--reason", help="Why the gate is overridden (logged on the run)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Move alias champion to the challenger if the promotion gate passes; the evidence is logged on the run."""
    from learnloop.errors import LearnloopError
    from training.api import PromotionOutcome
    from training.api import promote as run_promotion

    if force and not (reason and reason.strip()):
        typer.echo("error: --force needs --reason \"...\" (it is logged on the run)", err=True)
        raise typer.Exit(code=2)
    try:
        decision = run_promotion(model, force_reason=reason if force else None)
    except LearnloopError as exc:
        _exit_on_domain_error(exc)
    if as_json:
        typer.echo(json.dumps(decision.to_dict()))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{model}: v{decision.challenger_version} → {decision.outcome.value}")
        for column in ("check", "passed", "evidence"):
            table.add_column(column)
        for check in decision.checks:
            if check.name == "policy":  # the full policy is in --json and on the run
                continue
            table.add_row(check.name, "yes" if check.passed else "NO", check.detail)
        Console().print(table)
        typer.echo(f"champion: v{decision.champion_version}" if decision.champion_version
                   else f"champion: none (no version of '{model}' is champion)")
    _refresh_operator_page()
    if decision.outcome is PromotionOutcome.refused:
        raise typer.Exit(code=1)


def _refresh_operator_page() -> None:
    """The operator page shows the registry's aliases from a snapshot (the platform API does not read MLflow):
    refresh it after an alias moved, or /operator keeps showing the old champion until the next drift check."""
    try:
        from pipelines.monitoring.cli import record_registry_snapshot

        record_registry_snapshot()
    except Exception as exc:  # noqa: BLE001 - the alias moved; only the page's copy is stale, and we say so
        typer.echo(f"warning: the operator page's registry snapshot was not updated ({exc}); "
                   "`learnloop drift check` updates it", err=True)


def list_models(
    model: str | None = typer.Argument(None, help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Registered versions with aliases and held-out metrics."""
    from learnloop.errors import LearnloopError
    from training.api import list_models as registered

    try:
        versions = registered(model)
    except LearnloopError as exc:
        _exit_on_domain_error(exc)
    if as_json:
        typer.echo(json.dumps({"versions": [
            {"name": v.name, "version": v.version, "aliases": v.aliases, "created_at": v.created_at.isoformat(),
             "metrics": v.metrics, "feature_service": v.tags.get("feature_service"),
             "git_commit": v.tags.get("git_commit")} for v in versions]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="registered models")
    for column in ("model", "version", "aliases", "created", "held-out quality", "calibration", "commit"):
        table.add_column(column)

    def figure(metrics: dict, keys: tuple[str, ...]) -> str:
        """The first of ``keys`` the model logged, named: each kind of model has its own (risk, recommender,
        essay graders), and a risk-only column showed '—' for the others."""
        key = next((k for k in keys if k in metrics), None)
        return "—" if key is None else f"{key} {metrics[key]:.4f}"

    for v in versions:
        table.add_row(v.name, v.version, ", ".join(v.aliases), v.created_at.strftime("%Y-%m-%d %H:%M"),
                      figure(v.metrics, QUALITY_METRICS), figure(v.metrics, CALIBRATION_METRICS),
                      (v.tags.get("git_commit") or "")[:12])
    Console().print(table)


# What `models list` shows per kind of model (the gate's metric first); --json has every metric.
QUALITY_METRICS: tuple[str, ...] = ("auc_active", "ndcg_at_10", "qwk", "auc")
CALIBRATION_METRICS: tuple[str, ...] = ("ece_active", "interval_coverage_gap", "ece", "brier")


def rollback(
    model: str = typer.Argument(..., help="Registered model name."),
    to: str | None = typer.Option(None, "--to", help="Version to restore (default: the champion it replaced)."),
) -> None:
    """Move champion back to the previous champion (or to --to VERSION)."""
    from learnloop.errors import LearnloopError
    from training.api import rollback as run_rollback

    try:
        version = run_rollback(model, to_version=to)
    except LearnloopError as exc:
        _exit_on_domain_error(exc)
    _refresh_operator_page()
    typer.echo(f"{model}: champion is now v{version}")


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["train"].command("risk")(train_risk)
    groups["eval"].command("risk")(eval_risk)
    groups["models"].command("list")(list_models)
    groups["models"].command("rollback")(rollback)
    root.command("promote")(promote)


__all__ = ["register"]
