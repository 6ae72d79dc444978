"""The platform API as served: ``platform_api.main.create_app`` wired with the in-process ML backends.

``platform_api`` may not import ``recommender`` (it reaches ``models``/mlflow statically), so this composition
root hands the recommender's search and recommendation functions to the app. Run it with
``uvicorn learnloop.asgi:create_platform_app --factory`` (what `learnloop serve api` and the demo do).
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager


def create_platform_app():
    from platform_api.data import MLBackends
    from platform_api.main import create_app
    from recommender.api import search, search_index_status
    from serving.api import RecommendClient

    # Recommendations are served by the model service (POST /recommend, timeout + circuit breaker); when it is
    # down the route answers the course's popularity list with X-Learnloop-Fallback (platform_api._recommendations).
    app = create_app(ml=MLBackends(search=search, recommend=RecommendClient(),
                                   health=lambda: [search_index_status()]))
    # The AI grading worker runs beside the API (LEARNLOOP_GRADING_WORKER=0 when `learnloop grading work` runs
    # as its own process instead).
    if os.environ.get("LEARNLOOP_GRADING_WORKER", "1") != "0":
        attach_grading_worker(app)
    # Content created, changed or deleted through the API reaches search through the outbox (LEARNLOOP_SEARCH_INDEXER=0
    # when `learnloop search sync` runs elsewhere).
    if os.environ.get("LEARNLOOP_SEARCH_INDEXER", "1") != "0":
        attach_search_indexer(app)
    return app


def attach_search_indexer(app, *, settings=None, poll_seconds: float = 2.0):
    """Keep the search index current with the platform's content events in a thread for the app's lifetime."""
    from recommender.api import start_search_indexer

    return _attach_thread(app, lambda application: start_search_indexer(
        settings=settings or application.state.settings, poll_seconds=poll_seconds))


def attach_grading_worker(app, *, settings=None, poll_seconds: float = 2.0):
    """Run ``grading_nlp``'s AI grading worker in a thread for the app's lifetime (after its own start-up, so the
    schema is migrated first). ``platform_api`` cannot import ``grading_nlp`` (it reaches training/mlflow), so
    this composition root wires it."""
    from grading_nlp.api import start_grading_worker

    return _attach_thread(app, lambda application: start_grading_worker(
        settings=settings or application.state.settings, poll_seconds=poll_seconds))


def _attach_thread(app, start):
    """Run ``start(app)`` (→ ``(thread, stop_event)``) after the app's own start-up, stop it at shutdown."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application):
        async with inner(application) as state:
            thread, stop = start(application)
            try:
                yield state
            finally:
                stop.set()
                thread.join(timeout=10)

    app.router.lifespan_context = lifespan
    return app
