"""Commands this package adds to the `learnloop` CLI (heavy imports stay inside the commands)."""

from __future__ import annotations

import json

import typer


def serve_models(
    host: str | None = typer.Option(None, help="Bind address (default settings.serving_host, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default settings.serving_port, 3000)."),
    workers: int = typer.Option(2, min=1, help="Worker processes (each loads every champion); 2 = one per core here."),
    poll_seconds: float | None = typer.Option(None, help="Alias poll interval (default settings)."),
) -> None:
    """Run the model service (BentoML + ONNX Runtime) serving every @champion; Ctrl-C stops it."""
    import time

    from learnloop.errors import Unavailable
    from learnloop.settings import get_settings
    from learnloop.shutdown import sigterm_as_interrupt, stop_requested
    from serving.api import start_model_service, stop_model_service, wait_until_ready

    settings = get_settings()
    host = host or settings.serving_host
    port = port or settings.serving_port
    log_path = settings.data_path / "logs" / "model-service.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with sigterm_as_interrupt():  # kill / a service manager stops the server too, like Ctrl-C
        process = start_model_service(settings=settings, host=host, port=port, workers=workers,
                                      poll_seconds=poll_seconds, log_path=log_path)
        try:
            try:
                wait_until_ready(f"http://{host}:{port}", timeout=180, process=process)
                typer.echo(f"model service ready on http://{host}:{port} (POST /predict_risk, /grade_essay, "
                           f"/recommend, /admin/models, /admin/reload); log: {log_path}", err=True)
                _echo_served(f"http://{host}:{port}")
            except Unavailable as exc:
                if process.poll() is not None:  # it exited: say why, and fail
                    typer.echo(f"error: {exc}; the end of {log_path}:\n{_tail(log_path)}", err=True)
                    raise typer.Exit(1) from exc
                typer.echo(f"warning: {exc} (still starting; log: {log_path})", err=True)
            while process.poll() is None and not stop_requested():  # SIGTERM's KeyboardInterrupt can be lost
                time.sleep(0.5)
            if process.returncode:
                typer.echo(f"error: the model service stopped (exit {process.returncode}); the end of "
                           f"{log_path}:\n{_tail(log_path)}", err=True)
                raise typer.Exit(1)
        except KeyboardInterrupt:
            pass
        finally:
            stop_model_service(process)


def _echo_served(url: str) -> None:
    """One line per served model on stderr once the service is ready (what a worker loaded, what is missing)."""
    from learnloop.errors import Unavailable
    from serving.api import served_models

    try:
        models = served_models(base_url=url, timeout_s=10.0)
    except Unavailable as exc:
        typer.echo(f"warning: {exc}", err=True)
        return
    for line in _served_lines(models):
        typer.echo(line, err=True)


def _served_lines(models) -> list[str]:
    lines = []
    for model in models:
        origin = f"@{model.alias}" if model.alias else (f"trained {model.trained_at}" if model.trained_at else "")
        inputs = f"{model.n_inputs} inputs" if model.n_inputs is not None else ""
        head = " ".join(part for part in (f"  {model.name:18s} {model.status.value:11s}",
                                          _version(model.version), origin, inputs) if part)
        lines.append(head + (f" ({model.detail})" if model.detail else ""))
    return lines


def _version(version: str | None) -> str:
    """Registry versions are numbers (v3); an essay grader's version is a name of its own."""
    if not version:
        return "-"
    return f"v{version}" if version.isdigit() else version


def models_served(
    url: str | None = typer.Option(None, "--url", help="The model service (default settings.serving_url)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Every model the running model service serves (risk champion, recommender ranker, essay graders): version,
    alias or origin, input count, and whether it is loaded, not loaded yet, degraded or unavailable. Exit 1 when
    the service does not answer or a model is unavailable or degraded."""
    from serving.api import ServedModelStatus, served_models

    models = served_models(base_url=url, timeout_s=10.0)
    if as_json:
        typer.echo(json.dumps({"models": [model.model_dump(mode="json") for model in models]}))
    else:
        for line in _served_lines(models):
            typer.echo(line)
    troubled = [m.name for m in models if m.status in (ServedModelStatus.degraded, ServedModelStatus.unavailable)]
    if troubled:
        typer.echo(f"error: not served as intended: {', '.join(troubled)}", err=True)
        raise typer.Exit(1)


def _tail(path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


BENCH_PATHS = ("bentoml", "mlflow", "api", "limit", "essay")  # what --only may name


def bench_serve(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    seconds: float = typer.Option(10.0, min=1.0, help="Duration of each measured wrk run."),
    workers: int = typer.Option(2, min=1, help="Worker processes of every server (ours, mlflow, limit): same for all."),
    only: list[str] = typer.Option([], "--only", help="Measure only these paths (bentoml, mlflow, api, limit; essay = the essay grader's bentoml vs mlflow)."),
) -> None:
    """Latency/throughput of the risk champion: our service vs `mlflow models serve` on the champion's native
    scikit-learn pipeline (logged with it at training) vs the platform API vs plain FastAPI+ORT, at concurrency 1 and 16 (wrk on 127.0.0.1); and the essay grader: our /grade_essay vs
    `mlflow models serve` on a MiniLM-on-torch pyfunc (JSON key "essay")."""
    from rich.console import Console

    from learnloop.errors import LearnloopError
    from learnloop.settings import get_settings
    from serving._bench import bench_serve as run_bench

    console = Console(stderr=True)
    unknown = sorted(set(only) - set(BENCH_PATHS))
    if unknown:
        raise typer.BadParameter(f"unknown path(s) {', '.join(unknown)}; choose from {', '.join(BENCH_PATHS)}",
                                 param_hint="--only")
    try:
        with console.status("bench serve") as status:
            result = run_bench(get_settings(), seconds=seconds, workers=workers, only=only or None,
                               log=lambda message: status.update(f"bench serve: {message}"))
    except LearnloopError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(result))
        return
    _print_paths(result["paths"])
    typer.echo(f"throughput a/b {result['throughput_ratio_c16']}  p99 a/b {result['p99_ratio_c16']}  "
               f"a/limit {result['limit_fraction_c16']}")
    essay = result.get("essay")
    if essay:
        if essay.get("missing"):
            typer.echo(f"essay    missing: {essay['reason']}")
            return
        _print_paths(essay["paths"], prefix="essay ")
        typer.echo(f"essay throughput a/b {essay['throughput_ratio_c16']}")


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["serve"].command("models")(serve_models)
    groups["models"].command("served")(models_served)
    groups["bench"].command("serve")(bench_serve)


def _print_paths(paths: dict, *, prefix: str = "") -> None:
    """One line per server and concurrency of a bench result."""
    for name, path in paths.items():
        if path.get("missing"):
            typer.echo(f"{prefix}{name:8s} missing: {path['reason']}")
            continue
        for level in ("c1", "c16"):
            row = path[level]
            typer.echo(f"{prefix}{name:8s} {level:3s} {row['rps']:8.1f} rps  p50 {row['p50_ms']:7.2f} ms  "
                       f"p99 {row['p99_ms']:7.2f} ms  errors {row['non_2xx'] + row['socket_errors']}")
