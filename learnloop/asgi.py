"""The platform API as served: ``platform_api.main.create_app`` wired with the in-process ML backends.

``platform_api`` may not import ``recommender`` (it reaches ``models``/mlflow statically), so this composition
root hands the recommender's search and recommendation functions to the app. Run it with
``uvicorn learnloop.asgi:create_platform_app --factory`` (what `learnloop serve api` and the demo do).
"""

from __future__ import annotations


def create_platform_app():
    from platform_api.data import MLBackends
    from platform_api.main import create_app
    from recommender.api import recommend, search

    return create_app(ml=MLBackends(search=search, recommend=recommend))
