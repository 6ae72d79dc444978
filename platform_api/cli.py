"""Commands this package adds to the `learnloop` CLI (heavy imports stay inside the commands)."""

from __future__ import annotations

import typer


def serve_api(
    host: str = typer.Option(None, help="Bind address (default: settings.api_host, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: settings.api_port, 8000)."),
    workers: int = typer.Option(1, min=1, help="Uvicorn worker processes."),
    log_level: str = typer.Option("warning", help="Uvicorn's own log level (access logs are JSON anyway)."),
) -> None:
    """Run the LMS platform API with search, recommendations, the AI grading worker and the search indexer
    (learnloop.asgi); migrates the database to head at startup."""
    import uvicorn

    from learnloop.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    # The composition root wires search/recommendations into the app (platform_api may not import them).
    uvicorn.run("learnloop.asgi:create_platform_app", factory=True, host=host or settings.api_host,
                port=port or settings.api_port,
                workers=workers, log_level=log_level, access_log=False)


def create_admin(
    email: str = typer.Option(..., prompt=True, help="The admin's login email."),
    name: str = typer.Option("Administrator", help="Display name."),
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                 envvar="LEARNLOOP_ADMIN_PASSWORD", help="At least 8 characters."),
    json_output: bool = typer.Option(False, "--json", help="Print the new admin as one JSON object."),
) -> None:
    """Bootstrap the first admin account (migrates the database first)."""
    import json

    from pydantic import ValidationError

    from learnloop.errors import LearnloopError
    from learnloop.settings import get_settings
    from platform_api.api import create_admin as create
    from platform_api.api import open_session

    settings = get_settings()
    settings.ensure_dirs()
    try:
        with open_session(settings) as session:
            admin_id = create(session=session, email=email, name=name, password=password)
    except ValidationError as exc:
        typer.echo(f"Invalid input: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})", err=True)
        raise typer.Exit(2) from exc
    except LearnloopError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    if json_output:
        typer.echo(json.dumps({"user_id": str(admin_id), "email": email.lower(), "role": "admin"}))
    else:
        typer.echo(f"Created admin {email.lower()} ({admin_id}); log in with POST /api/v1/auth/login")


def bench_api(
    concurrency: int = typer.Option(16, min=1, help="Concurrent connections."),
    duration: int = typer.Option(10, min=1, max=300, help="Seconds per endpoint."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Latency (p50/p99) of GET /api/v1/courses/{id} and POST /api/v1/events under wrk, on 127.0.0.1."""
    import json

    from learnloop.errors import LearnloopError
    from learnloop.settings import get_settings
    from platform_api._bench import run_api_bench

    settings = get_settings()
    settings.ensure_dirs()
    try:
        figures = run_api_bench(settings=settings, concurrency=concurrency, duration_s=duration)
    except LearnloopError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    if json_output:
        typer.echo(json.dumps(figures))
        return
    for name in ("get_course", "post_event"):
        f = figures[name]
        typer.echo(f"{name}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, {f['requests_per_s']} req/s, "
                   f"non-2xx {f['non_2xx']}")


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["serve"].command("api")(serve_api)
    groups["users"].command("create-admin")(create_admin)
    groups["bench"].command("api")(bench_api)
