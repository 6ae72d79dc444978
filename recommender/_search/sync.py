"""Keep the search index current with the platform's content: a durable consumer of ``lms.content.events``.

The platform writes ``content.created`` / ``content.updated`` / ``content.deleted`` to its outbox in the same
transaction as the change. This consumer reads them in outbox order, looks up the touched items' current text in
the platform database (``platform_api.api.searchable_content``) and upserts them, or removes the items that no
longer exist. Applying an event twice gives the same index, which the rules below rely on:

- **Settled position.** Every content event up to ``settled`` is applied. Events after it are read on every pass
  (those already applied in this process are skipped); ``settled`` moves past an event only once it is
  ``SETTLE`` old, because on PostgreSQL a transaction that took an earlier position may still commit.
- **Durable.** ``settled`` is written to ``<data_dir>/search/content-cursor.json`` only after the index accepted
  the events, so an index that is down loses nothing: they are applied on a later pass.
- **Starting over** (from the first event) when the cursor cannot be trusted: the content events up to
  ``settled`` no longer number what was applied (one committed more than ``SETTLE`` late; checked every
  ``VERIFY_EVERY``) or the event at ``settled`` is not the one applied (the database was recreated).
- **Rebuilding** a lost index: when the index was opened empty (its folder or collection removed, or never filled)
  while the platform holds content, the pass replays every content event into it, from the first. Meanwhile the
  index is marked ``rebuilding``: search answers Unavailable (the platform serves its word match) and the
  operator row says so, with progress, until a pass has applied every event. A folder removed under the running
  process (its writes then fail) or a collection deleted from the Qdrant server (asked every ``VERIFY_EVERY``) is
  noticed too: the index is opened again, empty, and rebuilt. The mark is kept in the cursor, so a rebuild stopped
  by a shutdown resumes as one. Items indexed outside the platform (the demo's catalog) are not in its events: a
  rebuild cannot bring them back, and says so in the log.
- **One view per process.** The index keeps a per-process snapshot for BM25, so each process that serves search
  (each API worker on a Qdrant server) runs its own consumer from the saved cursor: it applies every later event
  to its own snapshot as well as to Qdrant.

``learnloop search sync`` runs one pass; the served platform runs :func:`start_indexer` in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from learnloop.events import Topic
from learnloop.settings import Settings, get_settings
from recommender._search.index import Rebuild
from recommender.data import ContentItem

log = logging.getLogger(__name__)

SETTLE = timedelta(seconds=60)
VERIFY_EVERY = 30.0  # seconds between recounts of the events up to the settled position
MAX_BACKOFF = 60.0  # seconds between tries while the index or the database is down


@dataclass
class SyncReport:
    """What one pass did (``learnloop search sync --json`` prints it)."""

    events: int = 0  # content events applied in this pass
    indexed: int = 0
    removed: int = 0
    position: int = 0  # the settled position after the pass
    restarted: str | None = None  # why the pass started over from the first event
    rebuilding: str | None = None  # why the index is being rebuilt from the platform's content (this pass worked on it)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Consumer:
    """This process's progress through the content events of one database, for one index."""

    settled: int = 0
    counted: int = 0  # content events up to ``settled``
    anchor: str | None = None  # event_id of the event at ``settled``
    index_items: int = 0  # items the index held after the last pass
    tail: dict[int, datetime] = field(default_factory=dict)  # applied events after ``settled``: position → time
    verified: float = float("-inf")
    last_pass: datetime | None = None  # when a pass last finished
    last_error: str | None = None  # why the last pass could not open the index
    rebuild: Rebuild | None = None  # the index is being refilled from the platform's content
    lock: threading.Lock = field(default_factory=threading.Lock)

    def restart(self) -> None:
        self.settled, self.counted, self.anchor, self.tail = 0, 0, None, {}

    def saved(self) -> dict:
        return {"position": self.settled, "events": self.counted, "anchor": self.anchor,
                "index_items": self.index_items, "rebuild": self.rebuild.as_dict() if self.rebuild else None}


_consumers: dict[str, _Consumer] = {}
_consumers_lock = threading.Lock()


def _cursor_path(settings: Settings) -> Path:
    return settings.data_path / "search" / "content-cursor.json"


def _source(settings: Settings) -> dict[str, str]:
    """What a cursor is valid for: this database and this index."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    return {"database": database, "index": settings.qdrant_url or str(settings.qdrant_path)}


def _consumer(settings: Settings) -> _Consumer:
    """This process's consumer for the settings' database and index, starting from the saved cursor."""
    source = _source(settings)
    key = json.dumps(source, sort_keys=True)
    with _consumers_lock:
        consumer = _consumers.get(key)
        if consumer is None:
            consumer = _consumers[key] = _Consumer()
            try:
                saved = json.loads(_cursor_path(settings).read_text())
            except (OSError, ValueError):
                saved = None
            if isinstance(saved, dict) and saved.get("source") == source:
                consumer.settled, consumer.counted = int(saved.get("position", 0)), int(saved.get("events", 0))
                consumer.anchor, consumer.index_items = saved.get("anchor"), int(saved.get("index_items", 0))
                try:
                    consumer.rebuild = Rebuild.from_dict(saved["rebuild"]) if saved.get("rebuild") else None
                except (KeyError, TypeError, ValueError):  # a cursor written by hand or another version
                    consumer.rebuild = None
        return consumer


def _save(settings: Settings, consumer: _Consumer) -> None:
    path = _cursor_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".cursor-", delete=False) as handle:
        json.dump({"source": _source(settings), **consumer.saved()}, handle)
    os.replace(handle.name, path)  # atomic: a crash leaves the old cursor or the new one


def _restart_reason(session, platform, consumer: _Consumer, verify: bool) -> str | None:
    if consumer.settled:
        at = platform.read_events(session=session, topic=Topic.content, after_id=consumer.settled - 1, limit=1)
        if not at or at[0][0] != consumer.settled or str(at[0][1].event_id) != consumer.anchor:
            return f"the event at position {consumer.settled} is not the one applied: the database was recreated"
        if verify:
            counted = platform.count_events(session=session, topic=Topic.content, up_to=consumer.settled)
            if counted != consumer.counted:
                return (f"{counted} content events up to position {consumer.settled}, {consumer.counted} applied: "
                        "one committed late")
    return None


def _lost_index(session, platform, consumer: _Consumer, index) -> str | None:
    """Why the index must be rebuilt from the platform's content (None: it need not). Asked once per opened index
    (the caller then clears ``opened_empty``): an index emptied by deletes, or empty on a platform whose content has
    no events, is not rebuilt every pass."""
    opened_empty = index.opened_empty
    if opened_empty is None or len(index):
        return None
    content = platform.count_content(session=session)
    if content:
        return f"{opened_empty} though the platform holds {content:,} content items"
    if consumer.index_items:
        log.warning("the search index was opened empty (%s) though it held %d items, and the platform holds no "
                    "content to rebuild it from: items indexed outside the platform (e.g. the demo's catalog) "
                    "must be indexed again", opened_empty, consumer.index_items)
    return None


def _restore_missing(session, platform, index) -> int:
    """Index the platform's content items that an index opened with items lacks, once per opened index after a
    pass that caught up with the events: an index folder removed and refilled with other items before the indexer
    looked at it (``learnloop demo`` indexes its catalog directly) opens non-empty, so it is not rebuilt, and the
    events already applied are not replayed. Returns how many items were indexed."""
    missing = platform.content_ids(session=session) - index.item_ids()
    index.reconciled = True
    if not missing:
        return 0
    log.warning("search index: %d of the platform's content items were missing from the opened index; indexing "
                "them again", len(missing))
    current = platform.searchable_content(session=session, content_ids=missing)
    return index.upsert([ContentItem(item_id=item.content_id, course_id=item.course_id, title=item.title,
                                     body=item.body, kind=item.kind) for item in current.values()])


def sync_once(*, settings: Settings | None = None, batch: int = 500, verify: bool | None = None,
              migrate: bool = False, stop: threading.Event | None = None) -> SyncReport:
    """Apply the content events this process has not applied yet (in batches of ``batch``); ``verify`` forces or
    skips the recount (default: every ``VERIFY_EVERY``); ``migrate`` brings the platform database to head first
    (the CLI; the served API did at start-up); ``stop`` ends the pass between batches."""
    from platform_api import api as platform
    from recommender.api import _open_index, close_search_index

    settings = settings or get_settings()
    consumer = _consumer(settings)  # before the index: a pass that cannot open it still shows as failing

    def opened():
        try:
            return _open_index(settings)
        except Exception as exc:
            consumer.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise

    index = opened()
    report = SyncReport()
    with consumer.lock, platform.open_session(settings, migrate_first=migrate) as session:
        if verify is None:
            verify = time.monotonic() - consumer.verified >= VERIFY_EVERY
        if verify:
            consumer.verified = time.monotonic()
        lost = index.storage_lost(ask_server=verify)
        if lost is not None:  # its writes would fail from now on: open it again (empty) and rebuild it below
            log.warning("search index: %s; opening it again", lost)
            close_search_index(settings)
            index = opened()
        report.restarted = _restart_reason(session, platform, consumer, verify)
        if report.restarted:
            log.warning("search index sync starts over: %s", report.restarted)
        rebuild_reason = _lost_index(session, platform, consumer, index)
        if rebuild_reason is not None:
            consumer.rebuild = Rebuild(reason=rebuild_reason, started_at=datetime.now(UTC),
                                       events_total=platform.count_events(session=session, topic=Topic.content),
                                       items_before=consumer.index_items)
            log.warning("search index: rebuilding it from the platform's content (%s): %d content events to apply "
                        "from the first; searches answer a word match meanwhile", rebuild_reason,
                        consumer.rebuild.events_total)
            if consumer.settled or consumer.tail:
                report.restarted = report.restarted or f"the search index was lost: {rebuild_reason}"
        if report.restarted:
            consumer.restart()
        if report.restarted or rebuild_reason is not None:
            _save(settings, consumer)  # a process stopped part way through resumes from the first event too
        # In this order: search reads ``opened_empty`` before ``rebuilding`` and never sees neither set too early.
        index.rebuilding = consumer.rebuild
        index.opened_empty = None
        report.rebuilding = consumer.rebuild.reason if consumer.rebuild is not None else None
        after, anchors, drained = consumer.settled, {}, False
        while stop is None or not stop.is_set():
            events = platform.read_events(session=session, topic=Topic.content, after_id=after, limit=batch)
            if not events:
                drained = True
                break
            after = events[-1][0]
            fresh = [(position, event) for position, event in events if position not in consumer.tail]
            touched = {str(event.payload.get("content_id") or event.payload.get("item_id") or "")
                       for _, event in fresh} - {""}
            current = platform.searchable_content(session=session, content_ids=touched)
            report.indexed += index.upsert([
                ContentItem(item_id=item.content_id, course_id=item.course_id, title=item.title, body=item.body,
                            kind=item.kind) for item in current.values()])
            report.removed += index.delete(sorted(touched - set(current)))
            report.events += len(fresh)
            consumer.tail.update({position: event.timestamp for position, event in fresh})
            anchors.update({position: str(event.event_id) for position, event in events})
            if consumer.rebuild is not None:
                consumer.rebuild.events_done = platform.count_events(session=session, topic=Topic.content,
                                                                     up_to=after)
                consumer.rebuild.items = len(index)
        if drained and consumer.rebuild is None and not index.reconciled:
            report.indexed += _restore_missing(session, platform, index)
        _settle(consumer, anchors)
        consumer.index_items = len(index)
        if consumer.rebuild is not None and drained:
            _rebuilt(consumer.rebuild, len(index))
            consumer.rebuild = index.rebuilding = None
        _save(settings, consumer)
        consumer.last_pass, consumer.last_error = datetime.now(UTC), None
    report.position = consumer.settled
    return report


def _rebuilt(rebuild: Rebuild, items: int) -> None:
    seconds = (datetime.now(UTC) - rebuild.started_at).total_seconds()
    log.info("search index rebuilt from the platform's content: %d items from %d content events in %.1f s",
             items, rebuild.events_total, seconds)
    if rebuild.items_before > items:
        log.warning("the search index held %d items before it was lost and %d now: the others were indexed outside "
                    "the platform (e.g. the demo's catalog) and must be indexed again", rebuild.items_before, items)


def _settle(consumer: _Consumer, anchors: dict[int, str]) -> None:
    """Move ``settled`` over the leading applied events that are ``SETTLE`` old (``anchors``: the event ids of the
    positions read in this pass, every applied one after ``settled`` unless the pass was stopped early)."""
    old = datetime.now(UTC) - SETTLE
    for position in sorted(consumer.tail):
        when = consumer.tail[position]
        if (when if when.tzinfo else when.replace(tzinfo=UTC)) > old or position not in anchors:
            break
        del consumer.tail[position]
        consumer.settled, consumer.counted, consumer.anchor = position, consumer.counted + 1, anchors[position]


def status(*, settings: Settings | None = None, stale_after: timedelta = timedelta(seconds=60)) -> dict:
    """The indexer as the operator page shows it: ``{"name", "status", "detail", "figures"}``; status ``ok``,
    ``degraded`` (the last pass could not open the index, or content changes waiting and no pass for
    ``stale_after``) or ``off`` (no indexer in this process)."""
    from platform_api import api as platform
    from recommender import api as recommender

    settings = settings or get_settings()
    key = json.dumps(_source(settings), sort_keys=True)
    with _consumers_lock:
        consumer = _consumers.get(key)
    if consumer is None:
        consumer = _Consumer()
        try:
            saved = json.loads(_cursor_path(settings).read_text())
            consumer.settled = int(saved.get("position", 0)) if saved.get("source") == _source(settings) else 0
        except (OSError, ValueError, AttributeError):
            pass
        running = False
    else:
        running = True
    with platform.open_session(settings, migrate_first=False) as session:
        total = platform.count_events(session=session, topic=Topic.content)
        settled = platform.count_events(session=session, topic=Topic.content, up_to=consumer.settled)
    waiting = max(0, total - settled - len(consumer.tail))
    index = recommender._INDEXES.get(recommender._location(settings))
    figures = {"content_events": total, "waiting": waiting, "position": consumer.settled,
               "items": len(index) if index is not None else None,
               "last_pass": consumer.last_pass.isoformat(timespec="seconds") if consumer.last_pass else None,
               "rebuilding": None}
    if not running:
        return {"name": "search index", "status": "off", "figures": figures,
                "detail": f"no indexer in this API process (LEARNLOOP_SEARCH_INDEXER=0?); {waiting} content changes "
                          "not applied yet: run `learnloop search sync`"}
    if consumer.last_error is not None:  # the last pass could not open the index: search cannot use it either
        return {"name": "search index", "status": "degraded", "figures": figures,
                "detail": f"the index cannot be opened ({consumer.last_error}); search answers a word match of the "
                          f"platform's content meanwhile; {waiting} content changes waiting, nothing is lost"}
    rebuild = consumer.rebuild
    if rebuild is not None:
        figures["rebuilding"] = rebuild.as_dict()
        return {"name": "search index", "status": "degraded", "figures": figures,
                "detail": f"rebuilding: {rebuild.describe()}; search answers a word match of the platform's content "
                          "meanwhile"}
    stale = consumer.last_pass is None or datetime.now(UTC) - consumer.last_pass > stale_after
    if waiting and stale:
        reason = consumer.last_error or "the index or its embedder is failing (see the API log)"
        return {"name": "search index", "status": "degraded", "figures": figures,
                "detail": f"{waiting} content changes waiting and no pass since {figures['last_pass'] or 'start'}: "
                          f"{reason}; nothing is lost"}
    return {"name": "search index", "status": "ok", "figures": figures,
            "detail": f"{figures['items'] if index is not None else '?'} items; {waiting} content changes waiting"}


def start_indexer(*, settings: Settings | None = None,
                  poll_seconds: float = 2.0) -> tuple[threading.Thread, threading.Event]:
    """Run :func:`sync_once` every ``poll_seconds`` in a daemon thread until the returned event is set. A failed
    pass (the index or the database down) is retried with backoff, logged once per distinct error; its events stay
    unapplied until then."""
    stop = threading.Event()

    def run() -> None:
        wait, last_error = poll_seconds, None
        while not stop.is_set():
            try:
                report = sync_once(settings=settings, stop=stop)
                if report.events or report.restarted:
                    log.info("search index sync: %s", report.as_dict())
                if last_error is not None:
                    log.info("search index sync works again")
                wait, last_error = poll_seconds, None
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if message != last_error:
                    log.exception("search index sync failed; retrying with backoff up to %.0f s", MAX_BACKOFF)
                last_error, wait = message, min(MAX_BACKOFF, wait * 2)
            stop.wait(wait)

    thread = threading.Thread(target=run, name="search-indexer", daemon=True)
    thread.start()
    return thread, stop
