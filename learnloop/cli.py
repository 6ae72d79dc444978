"""The `learnloop` command line: the composition root of the platform.

Each domain package contributes commands from its own ``cli`` module through a ``register(groups)``
function. Those modules keep heavy imports (torch, feast, mlflow) inside the command bodies so that
`learnloop --help` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="learnloop",
    help="learnloop: an AI-native learning platform and its closed ML loop.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)

GROUP_HELP: dict[str, str] = {
    "data": "Check, synthesise and import the data sets.",
    "features": "Build, materialise and benchmark the Feast feature store.",
    "train": "Train a model, log it to MLflow and register it as challenger.",
    "models": "Registered models (versions, aliases, metrics), rollback, and what the model service serves.",
    "serve": "Run the platform API or the model service.",
    "eval": "Measure model quality on real data (prints JSON with --json).",
    "bench": "Measure speed: latency percentiles and throughput (prints JSON with --json).",
    "drift": "Compare reference and current windows with Evidently.",
    "interventions": "Score active enrollments and raise at-risk alerts.",
    "users": "Manage platform users.",
    "search": "Keep the content search index current.",
}

# Modules that contribute commands, each with `register(groups: dict[str, typer.Typer]) -> None`.
COMMAND_MODULES = [
    "learnloop.data_cli",
    "pipelines.cli",
    "pipelines.monitoring.cli",
    "pipelines.interventions.cli",
    "training.cli",
    "serving.cli",
    "platform_api.cli",
    "recommender.cli",
    "grading_nlp.cli",
]


def build_app() -> typer.Typer:
    groups = {name: typer.Typer(help=help_text, no_args_is_help=True) for name, help_text in GROUP_HELP.items()}
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(groups=groups, root=app)
    for name, group in groups.items():
        if group.registered_commands or group.registered_groups:
            app.add_typer(group, name=name)
    _reflow_help(app)
    return app


def _reflow_help(typer_app: typer.Typer) -> None:
    """Command help comes from docstrings wrapped at 110 columns; the help screens keep their line breaks, so a
    sentence broke in the middle of a line ("… its current window (the" / "prediction log), …"). Each paragraph
    becomes one line and the terminal wraps it; blank lines still separate paragraphs."""
    import inspect

    for command in typer_app.registered_commands:
        text = command.help or inspect.getdoc(command.callback) or ""
        command.help = "\n\n".join(" ".join(paragraph.split()) for paragraph in text.split("\n\n")) or None
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


@app.command()
def demo(
    serve: bool = typer.Option(True, "--serve/--no-serve", help="After setting up, keep the services running."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use generated data even when real data exists."),
) -> None:
    """Set up every embedded component and run the loop end to end."""
    from learnloop.demo import run_demo

    run_demo(serve=serve, synthetic=synthetic)


def _quiet_third_parties() -> None:
    """Third-party deprecation notices (ibis/duckdb under Feast, SQLAlchemy under MLflow) are for library authors,
    not for our users, and MLflow's progress bars for fetching a few small artifacts bury our own. Feast re-enables
    deprecation warnings when imported (``simplefilter("once")``), so a filter set here would not hold: they are
    dropped where they would be shown. So are scipy's numeric RuntimeWarnings ("divide by zero encountered in
    divide", raised inside the chi-square tests Evidently runs on a category a window lacks): `learnloop drift check`
    printed eight of them before its table, and the drift figures already account for the case."""
    import os
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    show = warnings.showwarning

    def show_unless_deprecation(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning):
            return
        if issubclass(category, RuntimeWarning) and f"{os.sep}scipy{os.sep}" in str(filename):
            return
        show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_unless_deprecation


def main() -> None:
    """The ``learnloop`` command. A user error that a command did not report itself (bad data, a missing file, a
    refused request) is one line on stderr and exit status 1, not a traceback; anything else is a bug and keeps its
    traceback."""
    from learnloop.errors import LearnloopError

    _quiet_third_parties()
    try:
        build_app()()
    except LearnloopError as exc:
        _fail(exc.message)
    except FileNotFoundError as exc:
        _fail(f"no such file or folder: {exc.filename or exc}")


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(1)


if __name__ == "__main__":
    main()
