"""Content search: fusion logic, permission filter, incremental updates, persistence, content events."""

from __future__ import annotations

import numpy as np
import pytest

from learnloop.errors import InvalidInput, PermissionDenied
from learnloop.events import Event
from recommender import api
from recommender._search import fusion
from recommender._search.chunking import passages
from recommender.data import ContentChange, ContentItem

CATALOG = [
    ContentItem(
        "py-1", "course-a", "Python loops", "For loops and while loops iterate over lists in Python."
    ),
    ContentItem(
        "py-2", "course-a", "Python functions", "Define functions with def, pass arguments, return values."
    ),
    ContentItem(
        "bio-1", "course-a", "Cell biology", "Mitochondria produce energy for the cell through respiration."
    ),
    ContentItem(
        "sec-1", "course-secret", "Python loops (secret)", "For loops and while loops over lists in Python."
    ),
    ContentItem(
        "sec-2", "course-secret", "Cryptography", "Ciphers, keys and the secrecy of encrypted messages."
    ),
    ContentItem("art-1", "course-b", "Renaissance painting", "Perspective and light in Florentine frescoes."),
]


# -- fusion (pure functions) -----------------------------------------------------------------------------
def test_minmax_maps_missing_to_zero_and_flat_lists_to_one():
    scores = np.array([2.0, np.nan, 4.0, 3.0])
    np.testing.assert_allclose(fusion.minmax(scores), [0.0, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(fusion.minmax(np.array([5.0, np.nan])), [1.0, 0.0])
    np.testing.assert_allclose(fusion.minmax(np.array([np.nan, np.nan])), [0.0, 0.0])


def test_convex_fusion_interpolates_between_the_two_rankings():
    bm25 = np.array([10.0, 5.0, 0.0, np.nan])
    dense = np.array([0.1, 0.9, 0.5, 0.7])
    assert np.argmax(fusion.convex(bm25, dense, 0.0)) == 0  # BM25 alone
    assert np.argmax(fusion.convex(bm25, dense, 1.0)) == 1  # dense alone
    mixed = fusion.convex(bm25, dense, 0.5)
    np.testing.assert_allclose(mixed, 0.5 * fusion.minmax(dense) + 0.5 * fusion.minmax(bm25))
    assert np.argmax(mixed) == 1  # second in BM25, first in dense beats first/last
    with pytest.raises(ValueError):
        fusion.convex(bm25, dense, 1.5)


def test_rrf_rewards_agreement_and_ignores_missing_candidates():
    bm25 = np.array([3.0, 2.0, 1.0, np.nan])
    dense = np.array([0.2, 0.9, np.nan, 0.8])
    fused = fusion.rrf(bm25, dense, k=60)
    expected = np.array(
        [0.5 / (60 + 3) + 0.5 / 61, 0.5 / 61 + 0.5 / 62, 0.5 / 63, 0.5 / 62]
    )  # dense ranks: 1→1, 3→2, 0→3; BM25 ranks 0,1,2
    np.testing.assert_allclose(fused, expected)
    assert np.argmax(fused) == 1


def test_long_texts_are_split_into_titled_passages_and_short_ones_kept_whole():
    assert passages("Title", "Short body.") == ["Title. Short body."]
    body = " ".join(f"Sentence number {i} talks about topic {i} in some detail here." for i in range(60))
    chunks = passages("Title", body)
    assert len(chunks) > 3
    assert all(chunk.startswith("Title. ") for chunk in chunks)
    assert all(len(chunk.split()) <= 130 for chunk in chunks)
    assert " ".join(c.removeprefix("Title. ") for c in chunks) == body


# -- the index (tiny catalog, real ONNX embedder) -------------------------------------------------------
@pytest.fixture
def indexed(search_settings):
    assert api.index_items(CATALOG, settings=search_settings) == len(CATALOG)
    return search_settings


def test_hybrid_search_finds_the_relevant_item_first(indexed):
    hits = api.search("how do while loops work in python", allowed_course_ids=["course-a"], settings=indexed)
    assert hits[0].item_id == "py-1"
    hits = api.search("energy production in cells", allowed_course_ids=["course-a"], settings=indexed)
    assert hits[0].item_id == "bio-1"  # no shared stem with "produce" needed: dense carries it
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(
    "query", ["python loops secret", "cryptography ciphers keys", "secret", "encrypted messages", "loops"]
)
def test_unauthorized_content_never_appears(indexed, query):
    allowed = ["course-a", "course-b"]
    hits = api.search(query, allowed_course_ids=allowed, limit=100, settings=indexed)
    # (a query about the secret course alone may find nothing among the allowed ones: see the floor test below)
    assert {h.course_id for h in hits} <= set(allowed)
    assert not {h.item_id for h in hits} & {"sec-1", "sec-2"}
    # The same query with the secret course allowed does find its items: the filter is what hid them.
    with_secret = api.search(
        query, allowed_course_ids=[*allowed, "course-secret"], limit=100, settings=indexed
    )
    assert {h.item_id for h in with_secret} & {"sec-1", "sec-2"}


def test_a_query_with_no_answer_gets_no_hits_and_hits_carry_absolute_signals(indexed):
    """Scores are normalised per query, so without a floor gibberish got a "best" hit scored 1.0."""
    for nonsense in ("zzzqqxv", "asdf qwer", "\x00"):
        assert api.search(nonsense, allowed_course_ids=["course-a", "course-b"], settings=indexed) == [], nonsense
    hits = api.search("energy production in cells", allowed_course_ids=["course-a"], settings=indexed)
    best = hits[0]
    assert best.item_id == "bio-1" and best.similarity is not None and best.similarity >= 0.3
    loops = api.search("loops", allowed_course_ids=["course-a"], settings=indexed)
    assert loops[0].lexical_match and all(h.lexical_match or h.similarity >= 0.3 for h in loops)


def test_course_filter_narrows_and_must_be_allowed(indexed):
    hits = api.search(
        "python painting", allowed_course_ids=["course-a", "course-b"], course_id="course-b", settings=indexed
    )
    assert {h.course_id for h in hits} == {"course-b"}
    everywhere = api.search("python painting", allowed_course_ids=["course-a", "course-b"], settings=indexed)
    assert {h.course_id for h in everywhere} == {"course-a", "course-b"}
    with pytest.raises(PermissionDenied):
        api.search("python", allowed_course_ids=["course-a"], course_id="course-secret", settings=indexed)
    assert api.search("python", allowed_course_ids=[], settings=indexed) == []
    with pytest.raises(InvalidInput):
        api.search("python", allowed_course_ids=["course-a"], limit=0, settings=indexed)


def test_updates_and_deletes_keep_the_index_current_and_survive_a_restart(indexed):
    allowed = ["course-a", "course-b"]
    updated = ContentItem(
        "art-1", "course-b", "Baroque sculpture", "Bernini carved marble with dramatic motion."
    )
    api.index_items([updated], settings=indexed)
    hits = api.search("Bernini marble", allowed_course_ids=allowed, limit=3, settings=indexed)
    assert hits[0].item_id == "art-1" and hits[0].title == "Baroque sculpture"
    old = api.search(
        "Florentine frescoes perspective", allowed_course_ids=allowed, limit=10, settings=indexed
    )
    assert all(h.bm25_score == 0.0 for h in old if h.item_id == "art-1")  # old words are gone from BM25

    assert api.remove_items(["py-2"], settings=indexed) == 1
    assert "py-2" not in {
        h.item_id for h in api.search("functions def", allowed_course_ids=allowed, settings=indexed)
    }

    api.close_search_index(indexed)  # a new process reads the same Qdrant folder
    reopened = api.search("Bernini marble", allowed_course_ids=allowed, limit=100, settings=indexed)
    assert reopened[0].item_id == "art-1"
    found = {h.item_id for query in ("python loops functions def", "cell biology", "Bernini marble")
             for h in api.search(query, allowed_course_ids=allowed, limit=100, settings=indexed)}
    assert found == {"py-1", "bio-1", "art-1"}  # every remaining allowed item; secret items excluded, py-2 deleted


def test_content_events_create_update_delete(indexed):
    created = Event(
        event_type="content.created",
        course_id="course-b",
        payload={
            "content_id": "geo-1",
            "title": "Plate tectonics",
            "body": "Continents drift on mantle plates.",
        },
    )
    assert api.apply_content_event(created, settings=indexed) is ContentChange.created
    assert (
        api.search("continental drift", allowed_course_ids=["course-b"], settings=indexed)[0].item_id
        == "geo-1"
    )

    store = {"geo-1": ContentItem("geo-1", "course-b", "Volcanoes", "Magma erupts through the crust.")}
    updated = Event(event_type="content.updated", course_id="course-b", payload={"content_id": "geo-1"})
    assert api.apply_content_event(updated, fetch_item=store.get, settings=indexed) is ContentChange.updated
    assert (
        api.search("magma eruption", allowed_course_ids=["course-b"], settings=indexed)[0].item_id == "geo-1"
    )

    deleted = Event(event_type="content.deleted", payload={"content_id": "geo-1"})
    assert api.apply_content_event(deleted, settings=indexed) is ContentChange.deleted
    hits = api.search("magma eruption volcano", allowed_course_ids=["course-b"], limit=100, settings=indexed)
    assert "geo-1" not in {h.item_id for h in hits}

    other = Event(event_type="enrollment.created", payload={"content_id": "py-1"})
    assert api.apply_content_event(other, settings=indexed) is None
    with pytest.raises(InvalidInput):
        api.apply_content_event(
            Event(event_type="content.updated", payload={"content_id": "x"}), settings=indexed
        )


def test_a_content_event_delivered_twice_leaves_the_index_as_once(indexed):
    """Content events need no ledger: each is an upsert or a delete by content id, and the platform's carry no text
    (the item's current text is read when the event is applied), so a copy delivered again, later than JetStream's
    duplicate window and even after a newer event of the item, leaves the index as one delivery did."""
    store = {"geo-2": ContentItem("geo-2", "course-b", "Glaciers", "Ice sheets carve U-shaped valleys.")}
    index = api._open_index(indexed)

    def state():
        hits = api.search("glaciers ice valleys", allowed_course_ids=["course-b"], limit=100, settings=indexed)
        return len(index), {h.item_id: (h.title, round(h.score, 6)) for h in hits}

    def apply(event):
        return api.apply_content_event(event, fetch_item=store.get, settings=indexed)

    created = Event(event_type="content.created", course_id="course-b", payload={"content_id": "geo-2"})
    apply(created)
    once = state()
    assert apply(created) is ContentChange.created and state() == once and once[0] == len(CATALOG) + 1
    store["geo-2"] = ContentItem("geo-2", "course-b", "Glaciers and fjords", "Ice sheets carve valleys, the sea "
                                 "floods them.")
    updated = Event(event_type="content.updated", course_id="course-b", payload={"content_id": "geo-2"})
    apply(updated)
    after_update = state()
    assert after_update[1]["geo-2"][0] == "Glaciers and fjords"
    assert [apply(e) for e in (updated, created)] == [ContentChange.updated, ContentChange.created]
    assert state() == after_update  # the old "created" again: still the current text
    deleted = Event(event_type="content.deleted", payload={"content_id": "geo-2"})
    del store["geo-2"]
    apply(deleted)
    gone = state()
    assert [apply(e) for e in (deleted, updated)] == [ContentChange.deleted, ContentChange.deleted]
    assert state() == gone and "geo-2" not in gone[1] and gone[0] == len(CATALOG)


# -- a Qdrant server that is down ----------------------------------------------------------------------------------
class _FailingQueries:
    """A Qdrant client whose queries fail (the server went down after the index was opened); the rest passes."""

    def __init__(self, client) -> None:
        self._client = client
        self.queries = 0

    def query_points(self, *args, **kwargs):
        self.queries += 1
        raise ConnectionError("[Errno 111] Connection refused")

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_server_mode_answers_from_the_in_process_vectors_when_the_server_fails(search_settings):
    """Qdrant server mode, the server stops answering queries: the dense candidates come from the vectors every
    process keeps anyway, so the answer is the same (it used to be a failed search); the server is left alone for
    a while instead of being asked (and waited for) on every query."""
    from qdrant_client import QdrantClient

    from models.api import EmbeddingPrecision, get_text_embedder
    from recommender._search.index import SearchIndex

    embedder = get_text_embedder(EmbeddingPrecision(api.SEARCH_EMBEDDING_PRECISION), settings=search_settings)
    index = SearchIndex(client=QdrantClient(":memory:"), embedder=embedder, server_mode=True)
    index.upsert(CATALOG)
    allowed = ["course-a", "course-b"]
    queries = ["how do while loops work in python", "energy production in cells", "Florentine frescoes"]
    before = [[(h.item_id, round(h.score, 4)) for h in index.search(q, allowed_course_ids=allowed)] for q in queries]
    failing = index._client = _FailingQueries(index._client)
    after = [[(h.item_id, round(h.score, 4)) for h in index.search(q, allowed_course_ids=allowed)] for q in queries]
    assert after == before and before[0][0][0] == "py-1"
    assert failing.queries == 1  # asked once, then left alone for the retry window


def test_a_collection_deleted_from_the_server_is_noticed_and_a_down_server_is_not_taken_for_it(search_settings):
    """The content indexer asks every 30 s whether the server still has the collection (then it opens the index
    again and rebuilds it from the platform's content); a server that fails the question says nothing."""
    from qdrant_client import QdrantClient

    from models.api import EmbeddingPrecision, get_text_embedder
    from recommender._search.index import COLLECTION, SearchIndex

    embedder = get_text_embedder(EmbeddingPrecision(api.SEARCH_EMBEDDING_PRECISION), settings=search_settings)
    client = QdrantClient(":memory:")
    index = SearchIndex(client=client, embedder=embedder, server_mode=True)
    assert index.opened_empty == "its collection was missing"
    index.upsert(CATALOG[:2])
    assert index.storage_lost(ask_server=True) is None
    reopened = SearchIndex(client=client, embedder=embedder, server_mode=True)
    assert reopened.opened_empty is None and len(reopened) == 2
    client.delete_collection(COLLECTION)
    assert index.storage_lost(ask_server=False) is None  # not asked: no request
    assert "gone from the Qdrant server" in index.storage_lost(ask_server=True)

    class Down:
        def collection_exists(self, name):
            raise ConnectionError("[Errno 111] Connection refused")

    index._client = Down()
    assert index.storage_lost(ask_server=True) is None


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_hung_qdrant_server_is_waited_for_once_per_retry_window(search_settings):
    """A Qdrant server that accepts connections and never answers: the first search waits for the client's timeout
    and fails (the platform then answers its fallback); the next ones fail at once, saying when it is tried next
    (each used to wait for the timeout again, one after the other behind the index lock)."""
    import time

    from down_services import SilentServer

    from learnloop.errors import Unavailable

    with SilentServer() as qdrant:
        settings = search_settings.model_copy(update={"qdrant_url": qdrant.url("http")})
        try:
            with pytest.raises(Exception):  # noqa: B017 - whatever the client raises on its timeout
                api.search("python loops", allowed_course_ids=["course-a"], settings=settings)
            started = time.monotonic()
            for _ in range(3):
                with pytest.raises(Unavailable, match="next try in"):
                    api.search("python loops", allowed_course_ids=["course-a"], settings=settings)
            assert time.monotonic() - started < 1.0
        finally:
            api.close_search_index(settings)


class _HungQueries(_FailingQueries):
    """A Qdrant server that holds each query until the client's timeout, then fails."""

    def __init__(self, client, hang_s: float) -> None:
        super().__init__(client)
        self.hang_s = hang_s

    def query_points(self, *args, **kwargs):
        import time

        time.sleep(self.hang_s)
        return super().query_points(*args, **kwargs)


def _timed(call) -> tuple[str, float]:
    import time

    started = time.monotonic()
    try:
        call()
        outcome = "answered"
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test compares
        outcome = type(exc).__name__
    return outcome, time.monotonic() - started


def test_queries_during_the_retry_of_a_hung_server_do_not_wait_for_it(search_settings, monkeypatch):
    """Once the retry window has passed, one query tries the server again; the queries arriving while it waits for
    the timeout answered from the in-process vectors only after trying (and waiting for) the server themselves."""
    import threading
    import time

    from qdrant_client import QdrantClient

    from models.api import EmbeddingPrecision, get_text_embedder
    from recommender._search import index as index_module
    from recommender._search.index import SearchIndex

    embedder = get_text_embedder(EmbeddingPrecision(api.SEARCH_EMBEDDING_PRECISION), settings=search_settings)
    index = SearchIndex(client=QdrantClient(":memory:"), embedder=embedder, server_mode=True)
    index.upsert(CATALOG)
    hung = index._client = _HungQueries(index._client, hang_s=1.0)
    query = "how do while loops work in python"
    index.search(query, allowed_course_ids=["course-a"])  # warms the embedder; the server fails once
    monkeypatch.setattr(index_module, "SERVER_RETRY_AFTER_S", 0.3)
    time.sleep(0.4)  # the window has passed: the next query tries the server again
    results: dict[str, tuple[str, float]] = {}
    retry = threading.Thread(target=lambda: results.update(
        retry=_timed(lambda: index.search(query, allowed_course_ids=["course-a"]))))
    retry.start()
    time.sleep(0.2)
    results["meanwhile"] = _timed(lambda: index.search(query, allowed_course_ids=["course-a"]))
    retry.join()
    assert results["retry"][0] == results["meanwhile"][0] == "answered"
    assert results["meanwhile"][1] < 0.5 and hung.queries == 2, (results, hung.queries)


def test_searches_during_the_retry_of_an_index_that_did_not_open_fail_at_once(search_settings, monkeypatch):
    """Once the retry window has passed, one search tries to open the index again (a hung Qdrant server: one client
    timeout); the searches arriving meanwhile waited behind the index lock for that timeout, then failed."""
    import threading
    import time

    from learnloop.errors import Unavailable

    settings = search_settings.model_copy(update={"qdrant_url": "http://127.0.0.1:9"})
    tries = []

    def hung_open(settings, key):
        tries.append(key)
        time.sleep(1.0)
        raise Unavailable("Qdrant at http://127.0.0.1:9 timed out")

    monkeypatch.setattr(api, "_build_index", hung_open)
    try:
        assert _timed(lambda: api.search("loops", allowed_course_ids=["course-a"], settings=settings))[0] == \
            "Unavailable"
        monkeypatch.setattr(api, "OPEN_RETRY_AFTER_S", 0.3)
        time.sleep(0.4)
        results: dict[str, tuple[str, float]] = {}
        retry = threading.Thread(target=lambda: results.update(retry=_timed(
            lambda: api.search("loops", allowed_course_ids=["course-a"], settings=settings))))
        retry.start()
        time.sleep(0.2)
        results["meanwhile"] = _timed(lambda: api.search("loops", allowed_course_ids=["course-a"], settings=settings))
        retry.join()
        assert results["retry"][0] == results["meanwhile"][0] == "Unavailable"
        assert results["meanwhile"][1] < 0.3 and len(tries) == 2, (results, tries)
    finally:
        api.close_search_index(settings)
