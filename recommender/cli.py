"""Commands this package adds to the `learnloop` CLI (heavy imports stay inside the commands).

* ``learnloop eval search --data DIR --json``: BM25 / dense / hybrid on any BEIR folder.
* ``learnloop bench search --json``: latency of a hybrid query (incl. query embedding) on a 1,000-item catalog.
* ``learnloop bench recommend --json``: latency of one served recommendation list (course-level work cached).
* ``learnloop eval recommend --json``: next-items ranking on OULAD clicks against popularity and ItemKNN.
* ``learnloop train recommender``: the learned ranker → ONNX → MLflow ``recommender`` (challenger, then gate).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console

err = Console(stderr=True)


def _embedder(precision: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from models.api import EmbeddingPrecision, get_text_embedder

    try:
        chosen = EmbeddingPrecision(precision)
    except ValueError as exc:
        raise typer.BadParameter(
            f"--precision must be one of {[p.value for p in EmbeddingPrecision]}"
        ) from exc
    return get_text_embedder(chosen)


def _fail(exc) -> None:
    err.print(f"[red]error:[/red] {getattr(exc, 'message', exc)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from exc


def _emit(report: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report))
    else:
        err.print(report)


def _run(message: str, work, as_json: bool) -> None:
    """Run ``work(update)`` under a spinner (``update(text)`` changes its line), print its report; a domain error
    exits 2 with its message."""
    from learnloop.errors import LearnloopError

    try:
        with err.status(message) as status:
            report = work(lambda text: status.update(f"{message}: {text}"))
    except LearnloopError as exc:
        _fail(exc)
    _emit(report, as_json)


def eval_search(
    data: Path = typer.Option(
        ..., "--data", help="A BEIR-format folder: corpus.jsonl, queries.jsonl, qrels/test.tsv."
    ),
    precision: str = typer.Option(
        "int8", help="Embedding graph: int8 (quantised; what search serves) or fp32 (exact)."
    ),
    max_passages: int = typer.Option(
        1,
        help="Embed at most this many passages per document (0: all). BM25 always sees the whole text. "
        "The default (first passage, int8) embeds one vector per document, so a 5k-document corpus is "
        "minutes on a shared 2-core box; all passages in fp32 there took over an hour.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """NDCG@10 / recall@100 / MRR@10 of BM25, dense and hybrid search; fusion tuned on train qrels only."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from learnloop.errors import LearnloopError
    from recommender._search.beir_eval import evaluate_beir

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("loading", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        try:
            report = evaluate_beir(
                data, embedder=_embedder(precision), progress=progress, max_passages=max_passages or None
            )
        except LearnloopError as exc:
            _fail(exc)
    _emit(report, as_json)


def bench_search(
    items: int = typer.Option(1000, help="Catalog items to index."),
    courses: int = typer.Option(20, help="Courses the items are spread over."),
    queries: int = typer.Option(300, help="Timed queries per scenario."),
    precision: str = typer.Option(
        "int8", help="Embedding graph: int8 (quantised; what search serves) or fp32 (exact)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Latency of hybrid search (query embedding included) on the course catalog, with and without a filter."""
    from recommender._search.bench import bench_catalog_search

    _run("indexing the catalog and timing queries",
         lambda _update: bench_catalog_search(embedder=_embedder(precision), n_items=items, n_courses=courses,
                                              n_queries=queries), as_json)


def bench_recommend(
    learners: int = typer.Option(1537, help="Learners with opens (OULAD BBB 2013B: 1,537)."),
    items: int = typer.Option(315, help="Content items of the course (BBB 2013B: 315)."),
    day: int = typer.Option(120, help="Days since the course started (opens before it are the input)."),
    requests: int = typer.Option(200, help="Timed warm requests (a random learner each)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Latency of one served recommendation list (treatment arm, ONNX ranker) on a synthetic course of that size."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from recommender._recommend.bench import bench_recommend as run

    _run("fitting a small ranker and timing recommendation requests",
         lambda _update: run(n_learners=learners, n_items=items, day=day, requests=requests), as_json)


def eval_recommend(
    root: Path | None = typer.Option(None, "--root", help="OULAD folder (default: the data sets folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """NDCG@10 / recall@10 of next-item recommendations on OULAD clicks (temporal split, 7-day horizon)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # OpenMP spinning threads crawl on a shared 2-core box
    from recommender._recommend.oulad_eval import evaluate_oulad

    _run("evaluating recommenders on OULAD clicks", lambda update: evaluate_oulad(root, progress=update), as_json)


def _read_events(path: Path) -> list[str]:
    from learnloop.errors import InvalidInput

    if not path.is_file():
        raise InvalidInput(f"{path} is not a file (JSON lines of learnloop event envelopes)")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_and_promote(
    *, root: Path | None = None, events: list | None = None, platform: bool = False, register: bool = True,
    promote: bool = True, settings=None, progress=None,
) -> dict:
    """Fit the ranker on the OULAD presentations with clicks (+ platform opens in ``events``: JSON lines, dicts or
    ``Event`` objects; + with ``platform`` the platform database's own events), export ONNX (parity asserted),
    register ``recommender`` (with a sample of its training rows as drift monitoring's reference) and run the
    gate. What ``learnloop train recommender``, the demo and drift-triggered retraining run; lives here, not in
    ``recommender.api``, because serving imports that and must stay training-free."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # OpenMP spinning threads crawl on a shared 2-core box
    from learnloop.datasets import load_oulad
    from learnloop.errors import Unavailable
    from recommender._recommend import platform_events
    from recommender._recommend.clicks import oulad_course_clicks
    from recommender._recommend.oulad_eval import PRESENTATIONS
    from recommender._recommend.train import train_ranker
    from recommender.api import reset_ranker_cache

    courses = oulad_course_clicks(load_oulad(root), list(PRESENTATIONS))
    if not courses:
        raise Unavailable("no OULAD click data (studentVle) to train the recommender on")
    if platform:
        from learnloop.settings import get_settings

        events = [*(events or []), *platform_events.from_platform(settings or get_settings(), progress=progress)]
    platform_courses, summary = [], None
    if events is not None:
        parsed = platform_events.parse_events(events)  # JSON lines → envelopes once for the reads below
        platform_courses = platform_events.courses_from_interactions(platform_events.interactions(parsed),
                                                                     platform_events.content_kinds(parsed),
                                                                     platform_events.content_weeks(parsed))
        summary = platform_events.feedback_summary(parsed)
    report = train_ranker(courses, platform_courses=platform_courses, feedback=summary, register=register,
                          promote=promote, settings=settings, progress=progress)
    reset_ranker_cache()  # this process serves the new champion on its next request
    report["feedback"] = summary
    return report


def train_recommender(
    root: Path | None = typer.Option(None, "--root", help="OULAD folder (default: the data sets folder)."),
    events: Path | None = typer.Option(
        None, "--events", help="JSON lines of platform event envelopes (activity + recommendations.served)."
    ),
    platform: bool = typer.Option(
        False, "--platform", help="Add this platform's own events (its database as configured): opens, plans and "
        "served lists, without imported OULAD history. Combines with --events.",
    ),
    no_register: bool = typer.Option(False, "--no-register", help="Fit and evaluate only."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Register as challenger without the gate."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fit the learned ranker on OULAD clicks (+ platform opens), export ONNX, register and promote ``recommender``."""

    def work(update):
        return train_and_promote(root=root, events=None if events is None else _read_events(events),
                                 platform=platform, register=not no_register, promote=not no_promote,
                                 progress=update)

    _run("training the recommender", work, as_json)


def search_sync(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Apply the platform's content events since the last sync to the search index (the served platform does this
    every 2 s; run it after `learnloop data import` or when the API runs with LEARNLOOP_SEARCH_INDEXER=0)."""
    from recommender.api import close_search_index, sync_search_index

    try:
        _run("indexing content changes", lambda _update: sync_search_index(verify=True, migrate=True), as_json)
    finally:
        close_search_index()


def register(*, groups: dict[str, typer.Typer], root: typer.Typer) -> None:
    """Add this package's commands to the CLI groups (see ``learnloop.cli.GROUP_HELP``)."""
    groups["eval"].command("search")(eval_search)
    groups["bench"].command("search")(bench_search)
    groups["eval"].command("recommend")(eval_recommend)
    groups["bench"].command("recommend")(bench_recommend)
    groups["train"].command("recommender")(train_recommender)
    groups["search"].command("sync")(search_sync)
