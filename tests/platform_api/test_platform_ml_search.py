"""GET /api/v1/search: the platform decides the visible courses; the real recommender index answers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from platform_fixtures import Platform, fresh_database_url, start_platform

from learnloop.settings import Settings
from platform_api.data import MLBackends

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOPIC = "photosynthesis converts light energy into chemical energy in chloroplasts"


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory):
    from models.text_embedding import export_text_embedding_onnx, onnx_dir

    # Same folder as tests/recommender's fixture: one export per session when both run.
    shared = Settings(data_dir=tmp_path_factory.getbasetemp() / "shared-embedder-var")
    export_text_embedding_onnx(shared)
    return onnx_dir(shared)


def _search_with(settings_of):
    from recommender.api import search

    def backend(query, **kwargs):
        return search(query, **{**kwargs, "settings": settings_of(kwargs["settings"])})

    return backend


@pytest.fixture(scope="module")
def search_platform(tmp_path_factory, embedder_dir) -> Iterator[Platform]:
    from recommender.api import close_search_index, search

    database = fresh_database_url("sqlite", tmp_path_factory.mktemp("db-search"))
    data_dir = tmp_path_factory.mktemp("search-data")
    link = data_dir / "cache" / "onnx" / embedder_dir.name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(embedder_dir, target_is_directory=True)
    platform_gen = start_platform(next(database), data_dir, ml=MLBackends(search=search))
    platform = next(platform_gen)
    yield platform
    close_search_index(platform.settings)
    platform_gen.close()


@pytest.fixture(scope="module")
def courses(search_platform):
    """Five courses with the same topic; the learner may see exactly two of them."""
    from recommender.api import index_items
    from recommender.data import ContentItem

    p = search_platform
    _, instructor = p.user("instructor")
    learner_id, learner = p.user()
    ids = {
        "public": p.course(instructor),
        "private_enrolled": p.course(instructor, visibility="private"),
        "private": p.course(instructor, visibility="private"),
        "draft": p.course(instructor, publish=False),
        "other_institution": p.course(instructor, visibility="institution", metadata={"institution_id": "elsewhere"}),
    }
    enrolled = p.client.post(f"/api/v1/courses/{ids['private_enrolled']}/enrollments", headers=instructor,
                             json={"user_id": learner_id})  # a private course: its staff enroll you
    assert enrolled.status_code == 201, enrolled.text
    items = [ContentItem(item_id=f"{name}-{n}", course_id=course_id, title=f"{name} lesson {n}",
                         body=f"{TOPIC}. Lesson {n} of the {name} course.")
             for name, course_id in ids.items() for n in range(3)]
    assert index_items(items, settings=p.settings) == len(items)
    return {"ids": ids, "learner": learner, "learner_id": learner_id, "instructor": instructor}


def _search(p: Platform, headers, **params):
    return p.client.get("/api/v1/search", params=params, headers=headers)


@pytest.mark.parametrize("query", ["photosynthesis", "how do plants make energy from light", "lesson"])
def test_content_of_courses_the_learner_cannot_see_never_appears(search_platform, courses, query):
    ids = courses["ids"]
    response = _search(search_platform, courses["learner"], q=query, limit=100)
    assert response.status_code == 200, response.text
    assert "X-Learnloop-Fallback" not in response.headers and response.json()["unavailable"] is None
    hits = response.json()["data"]
    assert hits, "the visible courses hold matching items"
    assert {h["course_id"] for h in hits} == {ids["public"], ids["private_enrolled"]}
    # Staff of the courses see all of them: the filter, not the index, hid the rest from the learner.
    staff = _search(search_platform, courses["instructor"], q=query, limit=100).json()["data"]
    assert {h["course_id"] for h in staff} == set(ids.values())


def test_course_filter_and_refusals(search_platform, courses):
    ids = courses["ids"]
    one = _search(search_platform, courses["learner"], q="photosynthesis", course_id=ids["private_enrolled"])
    assert one.status_code == 200 and {h["course_id"] for h in one.json()["data"]} == {ids["private_enrolled"]}
    hidden = _search(search_platform, courses["learner"], q="photosynthesis", course_id=ids["private"])
    assert hidden.status_code == 404  # a course you may not see does not exist for you
    assert _search(search_platform, courses["learner"], q="", limit=5).status_code == 422
    assert _search(search_platform, courses["learner"], q="x", limit=1000).status_code == 422
    assert search_platform.client.get("/api/v1/search", params={"q": "x"}).status_code == 401


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_unavailable_index_is_the_documented_fallback(search_platform, courses):
    app = search_platform.app
    wired = app.state.ml
    try:
        app.state.ml = MLBackends()  # an API process started without the recommender
        response = _search(search_platform, courses["learner"], q="photosynthesis")
        assert response.status_code == 200 and response.headers["X-Learnloop-Fallback"] == "search-unavailable"
        assert response.json()["data"] == [] and "learnloop demo" in response.json()["unavailable"]
        # A Qdrant server that is down: the real client fails, the API answers the fallback, not a 500.
        dead = _search_with(lambda s: s.model_copy(update={"qdrant_url": "http://127.0.0.1:9"}))
        app.state.ml = MLBackends(search=dead)
        response = _search(search_platform, courses["learner"], q="photosynthesis")
        assert response.status_code == 200, response.text
        assert response.headers["X-Learnloop-Fallback"] == "search-unavailable"
        assert "search index is unavailable" in response.json()["unavailable"]
    finally:
        app.state.ml = wired
