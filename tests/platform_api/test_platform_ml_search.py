"""GET /api/v1/search: the platform decides the visible courses; the real recommender index answers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from platform_fixtures import Platform, fresh_database_url, outbox_hole, start_platform

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
    # The public course's hits are discoveries: the learner opens them after enrolling, and each hit says so.
    access = {h["course_id"]: h["access"] for h in hits}
    assert access == {ids["public"]: "enroll", ids["private_enrolled"]: "open"}
    # Staff of the courses see all of them: the filter, not the index, hid the rest from the learner.
    staff = _search(search_platform, courses["instructor"], q=query, limit=100).json()["data"]
    assert {h["course_id"] for h in staff} == set(ids.values())
    assert {h["access"] for h in staff} == {"open"}


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


def _hit_ids(p: Platform, headers, query: str) -> list[str]:
    response = _search(p, headers, q=query, limit=5)
    assert response.status_code == 200, response.text
    return [h["item_id"] for h in response.json()["data"]]


def test_content_made_through_the_api_is_searchable_changed_and_gone(search_platform, courses):
    """POST/PUT/DELETE /content → content events in the outbox → sync_search_index → what learners find."""
    from recommender.api import sync_search_index

    p, public = search_platform, courses["ids"]["public"]
    created = p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": public, "title": "Volcanoes", "body": "Magma rises through the crust and erupts as lava."})
    assert created.status_code == 201, created.text
    item = created.json()["id"]
    assert item not in _hit_ids(p, courses["learner"], "magma erupts as lava")  # not yet applied
    report = sync_search_index(settings=p.settings)
    assert report["events"] >= 1 and report["indexed"] >= 1
    assert _hit_ids(p, courses["learner"], "magma erupts as lava")[0] == item

    changed = p.client.put(f"/api/v1/content/{item}", headers=courses["instructor"], json={
        "title": "Glaciers", "body": "Ice sheets carve valleys as they slowly flow downhill."})
    assert changed.status_code == 200
    sync_search_index(settings=p.settings)
    assert _hit_ids(p, courses["learner"], "ice sheets carve valleys")[0] == item  # found by its new text
    hits = _search(p, courses["learner"], q="magma erupts as lava", limit=5).json()["data"]
    assert all("Magma" not in h.get("snippet", "") + h["title"] for h in hits)

    assert p.client.delete(f"/api/v1/content/{item}", headers=courses["learner"]).status_code == 403
    assert p.client.delete(f"/api/v1/content/{item}", headers=courses["instructor"]).status_code == 204
    assert p.client.get(f"/api/v1/content/{item}", headers=courses["instructor"]).status_code == 404
    report = sync_search_index(settings=p.settings)
    assert report["removed"] == 1
    assert item not in _hit_ids(p, courses["learner"], "ice sheets carve valleys")
    assert sync_search_index(settings=p.settings)["events"] == 0  # nothing new: the cursor moved on


def test_an_index_that_fails_loses_no_content_event(search_platform, courses, monkeypatch):
    from recommender import api as recommender
    from recommender.api import sync_search_index

    p, public = search_platform, courses["ids"]["public"]
    item = p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": public, "title": "Tides", "body": "The moon's gravity pulls the oceans into tidal bulges."}).json()["id"]
    index = recommender._open_index(p.settings)

    def down(*_args, **_kwargs):
        raise ConnectionError("qdrant is down")

    monkeypatch.setattr(index, "upsert", down)
    with pytest.raises(ConnectionError):
        sync_search_index(settings=p.settings)
    monkeypatch.undo()
    report = sync_search_index(settings=p.settings)  # the same events again, now applied
    assert report["indexed"] >= 1 and _hit_ids(p, courses["learner"], "moon gravity tidal bulges")[0] == item


def _commit_at(p: Platform, position: int, public: str, *, title: str, body: str) -> str:
    import uuid as uuid_module

    from sqlalchemy import delete

    from learnloop.events import Event
    from platform_api._models import ContentItem, OutboxEvent

    with p.app.state.sessions() as session:
        session.execute(delete(OutboxEvent).where(OutboxEvent.id == position))
        item = ContentItem(course_id=uuid_module.UUID(public), title=title, kind="text", version=1, body=body,
                           accessibility={})
        session.add(item)
        session.flush()
        event = Event(event_type="content.created", course_id=public, payload={"content_id": str(item.id)})
        session.add(OutboxEvent(id=position, event_id=event.event_id, topic="lms.content.events",
                                event_type=event.event_type, course_id=public, envelope=event.model_dump(mode="json")))
        session.commit()
        return str(item.id)


def test_an_event_committed_late_within_the_settle_window_is_applied(search_platform, courses):
    """On PostgreSQL a content event may commit after a later position was read: events of the last minute are
    read again on every pass, so it is applied without starting over."""
    from recommender.api import sync_search_index

    p, public = search_platform, courses["ids"]["public"]
    hole = outbox_hole(p)
    p.client.post("/api/v1/content", headers=courses["instructor"], json={  # a later position commits first
        "course_id": public, "title": "Rivers", "body": "Rivers erode their beds and carry sediment to the sea."})
    sync_search_index(settings=p.settings)
    item = _commit_at(p, hole, public, title="Comets",
                      body="A comet's tail of gas and dust always points away from the sun.")
    report = sync_search_index(settings=p.settings, verify=True)
    assert report["events"] == 1 and report["restarted"] is None
    assert _hit_ids(p, courses["learner"], "comet tail points away from the sun")[0] == item


def test_an_event_committed_after_it_settled_starts_the_scan_over(search_platform, courses, monkeypatch):
    """A commit later than the settle window (a long import on PostgreSQL) is caught by the recount."""
    from recommender._search import sync
    from recommender.api import sync_search_index

    monkeypatch.setattr(sync, "SETTLE", timedelta(0))  # every applied event settles at once
    p, public = search_platform, courses["ids"]["public"]
    hole = outbox_hole(p)
    p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": public, "title": "Deltas", "body": "A river delta forms where sediment settles at the mouth."})
    sync_search_index(settings=p.settings)
    item = _commit_at(p, hole, public, title="Auroras",
                      body="Charged solar particles make the polar sky glow green and violet.")
    assert sync_search_index(settings=p.settings, verify=False)["events"] == 0  # below the settled position
    report = sync_search_index(settings=p.settings, verify=True)
    assert report["restarted"] and "committed late" in report["restarted"]
    assert _hit_ids(p, courses["learner"], "solar particles polar sky glow")[0] == item


def test_a_recreated_database_starts_the_scan_over(search_platform, courses, monkeypatch):
    """Same URL, other history: the event at the settled position is not the one applied."""
    import uuid as uuid_module

    from sqlalchemy import func, select

    from platform_api._models import OutboxEvent
    from recommender._search import sync
    from recommender.api import sync_search_index

    monkeypatch.setattr(sync, "SETTLE", timedelta(0))
    p, public = search_platform, courses["ids"]["public"]
    p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": public, "title": "Canyons", "body": "Canyons are cut by rivers over millions of years."})
    settled = sync_search_index(settings=p.settings)["position"]
    with p.app.state.sessions() as session:
        assert settled == session.scalar(select(func.max(OutboxEvent.id)).where(
            OutboxEvent.topic == "lms.content.events"))
        row = session.get(OutboxEvent, settled)
        other = uuid_module.uuid4()
        row.event_id, row.envelope = other, {**row.envelope, "event_id": str(other)}
        session.commit()
    report = sync_search_index(settings=p.settings, verify=False)
    assert report["restarted"] and "recreated" in report["restarted"] and report["events"] >= 1


def test_an_emptied_index_is_refilled_once_and_an_empty_one_is_left_alone(search_platform, courses, embedder_dir,
                                                                         tmp_path):
    """Its own index (the module's holds catalog items): all content deleted leaves it empty without restarts;
    a removed index folder is refilled from the first event."""
    import shutil

    from recommender.api import close_search_index, sync_search_index

    p = search_platform
    own = p.settings.model_copy(update={"data_dir": tmp_path / "own"})
    link = own.cache_dir / "onnx" / embedder_dir.name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(embedder_dir, target_is_directory=True)
    try:
        item = p.client.post("/api/v1/content", headers=courses["instructor"], json={
            "course_id": courses["ids"]["public"], "title": "Dunes",
            "body": "Wind piles sand into dunes that creep across the desert."}).json()["id"]
        first = sync_search_index(settings=own)
        assert first["indexed"] >= 1 and first["restarted"] is None
        close_search_index(own)
        shutil.rmtree(own.qdrant_path)  # the folder is gone: everything is indexed again
        again = sync_search_index(settings=own)
        assert again["restarted"] and "was lost" in again["restarted"] and again["indexed"] == first["indexed"]
        assert "collection was missing" in again["rebuilding"] and sync_search_index(settings=own)["rebuilding"] is None
        # every item deleted: the index is empty and stays so without starting over on each pass
        for content_id in p.client.get(f"/api/v1/courses/{courses['ids']['public']}/content",
                                       headers=courses["instructor"], params={"limit": 200}).json()["data"]:
            p.client.delete(f"/api/v1/content/{content_id['id']}", headers=courses["instructor"])
        emptied = sync_search_index(settings=own)
        assert emptied["removed"] >= 1 and item not in _hit_ids(p, courses["instructor"], "wind piles sand dunes")
        assert [sync_search_index(settings=own, verify=True)["restarted"] for _ in range(2)] == [None, None]
    finally:
        close_search_index(own)


def test_a_local_index_held_by_another_client_is_a_clear_error(search_platform, tmp_path):
    from qdrant_client import QdrantClient

    from learnloop.errors import Unavailable
    from recommender.api import _open_index

    other = search_platform.settings.model_copy(update={"data_dir": tmp_path / "held"})
    other.qdrant_path.mkdir(parents=True)
    holder = QdrantClient(path=str(other.qdrant_path))
    try:
        with pytest.raises(Unavailable, match="open in another process"):
            _open_index(other)
    finally:
        holder.close()


def test_the_served_platform_indexes_new_content_by_itself(search_platform, courses):
    """The composition root's indexer thread (what `learnloop serve api` runs) applies the events within seconds."""
    from fastapi.testclient import TestClient

    from learnloop.asgi import attach_search_indexer
    from platform_api.main import create_app
    from recommender.api import search

    p, public = search_platform, courses["ids"]["public"]
    app = attach_search_indexer(create_app(p.settings, migrate=False, ml=MLBackends(search=search),
                                           per_user_per_minute=10**6, per_ip_per_minute=10**6),
                                poll_seconds=0.2)
    with TestClient(app) as client:
        item = client.post("/api/v1/content", headers=courses["instructor"], json={
            "course_id": public, "title": "Earthquakes",
            "body": "Tectonic plates slip along faults and send seismic waves."}).json()["id"]
        deadline = time.monotonic() + 30
        found = []
        while time.monotonic() < deadline and item not in found:
            time.sleep(0.3)
            found = [h["item_id"] for h in client.get("/api/v1/search", headers=courses["learner"], params={
                "q": "tectonic plates seismic waves", "limit": 3}).json()["data"]]
        assert found and found[0] == item


def test_the_indexer_thread_stops_when_asked(search_platform):
    from recommender.api import start_search_indexer

    thread, stop = start_search_indexer(settings=search_platform.settings, poll_seconds=0.1)
    time.sleep(0.5)
    assert thread.is_alive()
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_the_indexer_reports_its_health_for_the_operator_page(search_platform, courses, tmp_path):
    from recommender.api import search_index_status, sync_search_index

    p = search_platform
    p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": courses["ids"]["public"], "title": "Geysers", "body": "Heated groundwater erupts as steam."})
    waiting = search_index_status(settings=p.settings)
    assert waiting["figures"]["waiting"] >= 1
    sync_search_index(settings=p.settings)
    row = search_index_status(settings=p.settings)
    assert row["status"] == "ok" and row["figures"]["waiting"] == 0 and row["figures"]["items"] >= 15
    # a process that runs no indexer for this index says so, with what is waiting
    elsewhere = p.settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})
    off = search_index_status(settings=elsewhere)
    assert off["status"] == "off" and off["figures"]["waiting"] >= 1 and "learnloop search sync" in off["detail"]


def test_an_indexer_that_cannot_open_its_index_shows_as_degraded_with_the_reason(search_platform, courses,
                                                                                  tmp_path):
    from qdrant_client import QdrantClient

    from learnloop.errors import Unavailable
    from recommender.api import search_index_status, sync_search_index

    p = search_platform
    held = p.settings.model_copy(update={"data_dir": tmp_path / "held-index"})
    held.qdrant_path.mkdir(parents=True)
    holder = QdrantClient(path=str(held.qdrant_path))
    try:
        p.client.post("/api/v1/content", headers=courses["instructor"], json={
            "course_id": courses["ids"]["public"], "title": "Fjords", "body": "Glaciers carved the fjords."})
        with pytest.raises(Unavailable):
            sync_search_index(settings=held)
        row = search_index_status(settings=held)
        assert row["status"] == "degraded" and "open in another process" in row["detail"]
        assert row["figures"]["waiting"] >= 1
    finally:
        holder.close()


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_down_index_degrades_to_a_word_match_of_the_platform_content(search_platform, courses):
    """The search index cannot answer (no index in this process, a Qdrant server that is down): the platform's own
    content of the courses the caller may see is still found by its words, marked lexical, with the reason. It used
    to be no results at all. Authorization is the same as for the index: nothing of a course the caller cannot
    see, and a public course's hit is a discovery."""
    p, ids = search_platform, courses["ids"]
    created = {}
    for name in ("public", "private_enrolled", "private"):
        response = p.client.post("/api/v1/content", headers=courses["instructor"], json={
            "course_id": ids[name], "title": f"Volcanoes ({name})",
            "body": "Magma rises through the crust and erupts as lava."})
        assert response.status_code == 201, response.text
        created[name] = response.json()["id"]
    p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": ids["public"], "title": "Deserts", "body": "Dunes of sand; magmatic rocks are elsewhere."})
    app, wired = p.app, p.app.state.ml
    dead = _search_with(lambda s: s.model_copy(update={"qdrant_url": "http://127.0.0.1:9"}))
    try:
        for backend in (MLBackends(), MLBackends(search=dead)):
            app.state.ml = backend
            response = _search(p, courses["learner"], q="magma lava", limit=10)
            assert response.status_code == 200, response.text
            body = response.json()
            hits = {h["item_id"]: h for h in body["data"]}
            assert set(hits) == {created["public"], created["private_enrolled"]}  # whole words: not "magmatic"
            assert response.headers["X-Learnloop-Fallback"] == "search-unavailable" and body["mode"] == "lexical"
            assert "plain word match" in body["unavailable"]
            assert hits[created["public"]]["access"] == "enroll" and hits[created["private_enrolled"]]["access"] == "open"
            assert all(h["lexical_match"] and h["similarity"] is None for h in hits.values())
            one = _search(p, courses["learner"], q="lava", course_id=ids["private_enrolled"]).json()
            assert [h["item_id"] for h in one["data"]] == [created["private_enrolled"]]
            assert _search(p, courses["learner"], q="zzqx unheard", limit=5).json()["data"] == []
        staff = _search(p, courses["instructor"], q="volcanoes private", limit=10).json()["data"]
        assert staff[0]["item_id"] == created["private"]  # more of the query's words ranks first
    finally:
        app.state.ml = wired
    healthy = _search(p, courses["learner"], q="photosynthesis").json()
    assert healthy["mode"] == "hybrid" and healthy["unavailable"] is None


def test_an_index_that_cannot_be_opened_is_degraded_even_with_nothing_waiting(search_platform, embedder_dir,
                                                                                tmp_path):
    """An indexer that applied everything, then cannot open its index (another process holds the folder): the
    operator page says so, though no content change is waiting (it said "ok" while search failed)."""
    from qdrant_client import QdrantClient

    from learnloop.errors import Unavailable
    from recommender.api import close_search_index, search_index_status, sync_search_index

    own = search_platform.settings.model_copy(update={"data_dir": tmp_path / "own"})
    link = own.cache_dir / "onnx" / embedder_dir.name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(embedder_dir, target_is_directory=True)
    sync_search_index(settings=own)
    close_search_index(own)
    holder = QdrantClient(path=str(own.qdrant_path))
    try:
        with pytest.raises(Unavailable):
            sync_search_index(settings=own)
        row = search_index_status(settings=own)
        assert row["figures"]["waiting"] == 0
        assert row["status"] == "degraded" and "open in another process" in row["detail"]
    finally:
        holder.close()
        close_search_index(own)


def _lexical(p: Platform, headers, q: str, course_id: str) -> list[str]:
    body = p.client.get("/api/v1/search", params={"q": q, "course_id": course_id}, headers=headers).json()
    assert body["mode"] == "lexical", body  # this app has no index wired: the word-match fallback answers
    return [h["item_id"] for h in body["data"]]


def test_the_word_match_fallback_finds_words_with_non_ascii_capitals_on_every_database(platform):
    """SQLite's lower() folds only ASCII letters: the fallback found "Ökologie" or "ФИЗИКА" on PostgreSQL, and on
    SQLite (the default database) nothing, however the query was written."""
    _, instructor = platform.user("instructor")
    course = platform.course(instructor)

    def content(title: str, body: str) -> str:
        response = platform.client.post("/api/v1/content", headers=instructor,
                                         json={"course_id": course, "title": title, "body": body})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    ecology, physics, school = (content("Ökologie der Wälder", "Wald und Wiese"), content("ФИЗИКА", "Основы"),
                                content("Notes", "Une visite à l'École normale"))
    for query, found in (("ökologie", ecology), ("Ökologie", ecology), ("ÖKOLOGIE", ecology), ("физика", physics),
                         ("Физика", physics), ("école", school), ("ÉCOLE", school)):
        assert _lexical(platform, instructor, query, course) == [found], (platform.settings.database_url, query)


def test_the_word_match_fallback_reads_the_items_holding_most_query_words_first(platform, monkeypatch):
    """Candidates were the newest rows sharing any word: a common word of the query ("in") let newer items crowd
    out an older one holding every word, which was then not returned at all."""
    from platform_api import _search

    _, instructor = platform.user("instructor")
    course = platform.course(instructor)

    def content(title: str, body: str) -> str:
        response = platform.client.post("/api/v1/content", headers=instructor,
                                         json={"course_id": course, "title": title, "body": body})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    target = content("Photosynthesis", "How plants turn light into sugar")
    newer = [content(f"Week {n} notes", "Reading in the library") for n in range(4)]
    monkeypatch.setattr(_search, "LEXICAL_CANDIDATES", 3)  # 500 in production: fewer rows than that here
    found = _lexical(platform, instructor, "photosynthesis in plants", course)
    assert found[0] == target and set(found[1:]) <= set(newer), found


def _own_index(p: Platform, embedder_dir, folder) -> Settings:
    """``p``'s platform with a search index of its own (the module's holds items indexed outside the platform)."""
    own = p.settings.model_copy(update={"data_dir": folder})
    link = own.cache_dir / "onnx" / embedder_dir.name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(embedder_dir, target_is_directory=True)
    return own


def _served_with_indexer(p: Platform, own: Settings):
    """A test client of ``p``'s API searching ``own``'s index, with the content indexer beside it (as served)."""
    from fastapi.testclient import TestClient

    from learnloop.asgi import attach_search_indexer
    from platform_api.main import create_app

    app = create_app(p.settings, migrate=False, ml=MLBackends(search=_search_with(lambda _s: own)),
                     per_user_per_minute=10**6, per_ip_per_minute=10**6)
    return TestClient(attach_search_indexer(app, settings=own, poll_seconds=0.2))


def _as_a_new_process(settings: Settings) -> None:
    """Forget this process's index and indexer progress for ``settings``: the next use starts as a new process would,
    from the Qdrant folder and the saved cursor."""
    import json

    from recommender._search import sync
    from recommender.api import close_search_index

    close_search_index(settings)
    sync._consumers.pop(json.dumps(sync._source(settings), sort_keys=True), None)


def test_a_removed_index_folder_is_rebuilt_from_the_platform_content_on_start(search_platform, courses,
                                                                             embedder_dir, tmp_path, monkeypatch):
    """The served API indexed content; its index folder is removed while it is stopped. Started again, it finds the
    content by itself and at every moment: by its words while the indexer rebuilds the index (held here until a
    search came), then through the hybrid index again. Searches used to answer from the empty or partial index."""
    import shutil
    import threading

    from recommender._search.index import SearchIndex

    p, public = search_platform, courses["ids"]["public"]
    own = _own_index(p, embedder_dir, tmp_path / "own")

    def served():
        return _served_with_indexer(p, own)

    def answers(client, query: str, item: str, *, every: bool, timeout_s: float = 60.0) -> list[str]:
        """The search modes until the hybrid index finds ``item`` (``every``: each answer must hold it)."""
        modes, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = client.get("/api/v1/search", headers=courses["learner"], params={"q": query, "limit": 5}).json()
            found = item in [h["item_id"] for h in body["data"]]
            assert found or not every, body
            modes.append(body["mode"] if found else "not found")
            searched.set()
            if modes[-1] == "hybrid":
                return modes
            time.sleep(0.2)
        raise AssertionError(f"the index did not find {item} within {timeout_s} s: {modes[-3:]}")

    searched = threading.Event()
    try:
        with served() as client:
            item = client.post("/api/v1/content", headers=courses["instructor"], json={
                "course_id": public, "title": "Cirrus clouds",
                "body": "Thin wisps of ice crystals high in the troposphere."}).json()["id"]
            assert answers(client, "cirrus ice crystals", item, every=False)[-1] == "hybrid"
        _as_a_new_process(own)
        shutil.rmtree(own.qdrant_path)
        searched.clear()
        upsert = SearchIndex.upsert

        def after_a_search(self, batch, **kwargs):
            searched.wait(30)
            return upsert(self, batch, **kwargs)

        monkeypatch.setattr(SearchIndex, "upsert", after_a_search)
        with served() as client:
            modes = answers(client, "cirrus ice crystals", item, every=True)
        assert modes[0] == "lexical" and modes[-1] == "hybrid"
    finally:
        searched.set()
        _as_a_new_process(own)


def test_a_removed_index_folder_refilled_with_other_items_gets_the_platform_content_back(search_platform, courses,
                                                                                         embedder_dir, tmp_path,
                                                                                         monkeypatch):
    """The index folder is removed while the API is stopped, and ``learnloop demo`` (or any direct indexing) puts
    other items in a new one before the API starts: the index opens non-empty, so nothing is rebuilt, and the
    applied events are not replayed. The indexer's first pass that catches up still indexes the platform content
    the index lacks; it used to stay missing from the hybrid index for good."""
    import shutil

    from recommender._search import sync
    from recommender.api import ContentItem, index_items

    monkeypatch.setattr(sync, "SETTLE", timedelta(0))  # the content's event settles at once: it is never replayed
    p, public = search_platform, courses["ids"]["public"]
    own = _own_index(p, embedder_dir, tmp_path / "own")

    def served():
        return _served_with_indexer(p, own)

    def hybrid_hit(client, item: str, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = client.get("/api/v1/search", headers=courses["learner"],
                              params={"q": "cumulonimbus anvil thunder", "limit": 5}).json()
            if body["mode"] == "hybrid" and item in [h["item_id"] for h in body["data"]]:
                return True
            time.sleep(0.2)
        return False

    try:
        with served() as client:
            item = client.post("/api/v1/content", headers=courses["instructor"], json={
                "course_id": public, "title": "Cumulonimbus",
                "body": "Towering anvil clouds that bring thunder and heavy rain."}).json()["id"]
            assert hybrid_hit(client, item)
        _as_a_new_process(own)
        shutil.rmtree(own.qdrant_path)
        index_items([ContentItem(item_id="catalog-1", course_id=public, title="Catalog entry",
                                 body="An item indexed outside the platform.")], settings=own)
        _as_a_new_process(own)
        with served() as client:
            assert hybrid_hit(client, item), "the platform's content never came back into the refilled index"
    finally:
        _as_a_new_process(own)


def test_a_rebuild_shows_on_the_operator_row_and_search_answers_word_matches_meanwhile(search_platform, courses,
                                                                                       embedder_dir, tmp_path,
                                                                                       monkeypatch):
    """While the indexer refills a lost index, searches get the platform's word match (the index would answer
    only what it has reached) and the operator row says "rebuilding" with its progress; both recover once done. A
    rebuild stopped by a shutdown resumes as one in the next process."""
    import shutil
    import threading

    from recommender._search.index import SearchIndex
    from recommender._search.sync import sync_once
    from recommender.api import search, search_index_status, sync_search_index

    p, public = search_platform, courses["ids"]["public"]
    own = _own_index(p, embedder_dir, tmp_path / "own")
    items = [p.client.post("/api/v1/content", headers=courses["instructor"], json={
        "course_id": public, "title": f"Storm chasing {n}",
        "body": "Supercell thunderstorms rotate and can spawn tornadoes."}).json()["id"] for n in range(3)]
    sync_search_index(settings=own)
    _as_a_new_process(own)
    shutil.rmtree(own.qdrant_path)

    # A shutdown after the first batch: the next process resumes the rebuild, searches still answer word matches.
    stop = threading.Event()
    upsert = SearchIndex.upsert

    def one_item_then_stop(self, batch, **kwargs):
        batch = list(batch)
        if batch:  # (an event of an item deleted since indexes nothing)
            stop.set()
        return upsert(self, batch, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(SearchIndex, "upsert", one_item_then_stop)
        first = sync_once(settings=own, batch=1, stop=stop)
    assert first.rebuilding and first.indexed == 1
    _as_a_new_process(own)

    release, inside = threading.Event(), threading.Event()

    def slow(self, batch, **kwargs):
        inside.set()
        assert release.wait(30)
        return upsert(self, batch, **kwargs)

    monkeypatch.setattr(SearchIndex, "upsert", slow)
    app, wired = p.app, p.app.state.ml
    app.state.ml = MLBackends(search=_search_with(lambda _s: own))
    worker = threading.Thread(target=sync_search_index, kwargs={"settings": own})
    try:
        worker.start()
        assert inside.wait(30)
        row = search_index_status(settings=own)
        assert row["status"] == "degraded" and row["detail"].startswith("rebuilding")
        assert row["figures"]["rebuilding"]["events_total"] >= 3 and "collection was missing" in row["detail"]
        body = _search(p, courses["learner"], q="supercell tornadoes", limit=10).json()
        assert body["mode"] == "lexical" and "being rebuilt" in body["unavailable"]
        assert set(items) <= {h["item_id"] for h in body["data"]}
        release.set()
        worker.join(60)
        assert not worker.is_alive()
        row = search_index_status(settings=own)
        assert row["status"] == "ok" and row["figures"]["rebuilding"] is None
        body = _search(p, courses["learner"], q="supercell tornadoes", limit=10).json()
        assert body["mode"] == "hybrid" and set(items) <= {h["item_id"] for h in body["data"]}
        assert {h.item_id for h in search("supercell tornadoes", allowed_course_ids=[public], limit=10,
                                          settings=own)} >= set(items)
    finally:
        release.set()
        worker.join(60)
        app.state.ml = wired
        _as_a_new_process(own)


def test_an_index_folder_removed_under_the_running_indexer_is_rebuilt(search_platform, courses, embedder_dir,
                                                                       tmp_path):
    """Local Qdrant keeps serving from memory when its folder is removed, but every write then fails ("attempt to
    write a readonly database") and nothing would be kept at the next start: the indexer opens the index again and
    rebuilds it, so new content is indexed and the folder holds everything again."""
    import shutil

    from recommender.api import search, sync_search_index

    p, public = search_platform, courses["ids"]["public"]
    own = _own_index(p, embedder_dir, tmp_path / "own")
    try:
        before = p.client.post("/api/v1/content", headers=courses["instructor"], json={
            "course_id": public, "title": "Basalt", "body": "Lava cools quickly into fine-grained basalt."}).json()["id"]
        sync_search_index(settings=own)
        shutil.rmtree(own.qdrant_path)
        after = p.client.post("/api/v1/content", headers=courses["instructor"], json={
            "course_id": public, "title": "Granite", "body": "Magma cools slowly underground into granite."}).json()["id"]
        report = sync_search_index(settings=own)
        assert report["rebuilding"] and report["indexed"] >= 2
        _as_a_new_process(own)  # what the folder holds now
        found = {h.item_id for h in search("lava magma cools basalt granite", allowed_course_ids=[public], limit=20,
                                           settings=own)}
        assert {before, after} <= found
    finally:
        _as_a_new_process(own)
