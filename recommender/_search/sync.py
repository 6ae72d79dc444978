"""Keep the search index current with the platform's content: a durable consumer of ``lms.content.events``.

The platform writes ``content.created`` / ``content.updated`` / ``content.deleted`` to its outbox in the same
transaction as the change. This consumer reads them in outbox order after its cursor, looks up the items' current
text in the platform database (``platform_api.api.searchable_content``) and upserts them, or removes the items
that no longer exist. The cursor (the last outbox position applied, and how many content events lay up to it) is
written only after the index accepted the batch, so an index that is down loses nothing: the same events are
applied on the next pass. Every ``VERIFY_EVERY`` the events up to the cursor are counted again; a different count
(an event that committed after the cursor passed its position, or a recreated database) starts the scan over,
which is safe because applying an event again gives the same index. An index found empty while the cursor says it
applied events (its folder was deleted) also starts over.

``learnloop search sync`` runs one pass; the served platform runs :func:`start_indexer` in a thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from learnloop.events import Topic
from learnloop.settings import Settings, get_settings
from recommender.data import ContentItem

log = logging.getLogger(__name__)

VERIFY_EVERY = 30.0  # seconds between recounts of the events up to the cursor
_last_verified: dict[str, float] = {}


@dataclass
class SyncReport:
    """What one pass did (``learnloop search sync --json`` prints it)."""

    events: int = 0
    indexed: int = 0
    removed: int = 0
    position: int = 0  # the outbox position applied up to
    restarted: str | None = None  # why the pass started over from the first event

    def as_dict(self) -> dict:
        return asdict(self)


def _cursor_path(settings: Settings) -> Path:
    return settings.data_path / "search" / "content-cursor.json"


def _source(settings: Settings) -> dict[str, str]:
    """What the cursor is valid for: this database and this index."""
    from sqlalchemy.engine import make_url

    database = make_url(settings.sqlalchemy_url).render_as_string(hide_password=True)
    return {"database": database, "index": settings.qdrant_url or str(settings.qdrant_path)}


def _read_cursor(settings: Settings) -> tuple[int, int]:
    """(position, content events up to it) for this database and index; (0, 0) when none was saved for them."""
    path = _cursor_path(settings)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0, 0
    if not isinstance(saved, dict) or saved.get("source") != _source(settings):
        return 0, 0
    return int(saved.get("position", 0)), int(saved.get("events", 0))


def _write_cursor(settings: Settings, position: int, events: int) -> None:
    path = _cursor_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"source": _source(settings), "position": position, "events": events}))
    os.replace(temporary, path)  # atomic: a crash leaves the old cursor or the new one


def sync_once(*, settings: Settings | None = None, batch: int = 500, verify: bool | None = None,
              migrate: bool = False) -> SyncReport:
    """Apply every content event after the cursor to the search index (in batches of ``batch`` events);
    ``migrate`` brings the platform database to head first (the CLI; the served API did at start-up)."""
    from platform_api import api as platform
    from recommender.api import _open_index

    settings = settings or get_settings()
    index = _open_index(settings)
    position, applied = _read_cursor(settings)
    report = SyncReport(position=position)
    key = json.dumps(_source(settings), sort_keys=True)
    with platform.open_session(settings, migrate_first=migrate) as session:
        if verify is None:
            verify = time.monotonic() - _last_verified.get(key, float("-inf")) >= VERIFY_EVERY
        if position and verify:
            _last_verified[key] = time.monotonic()
            counted = platform.count_events(session=session, topic=Topic.content, up_to=position)
            if counted != applied:
                report.restarted = (f"{counted} content events up to position {position}, {applied} applied: one "
                                    "committed late or the database was recreated")
        if position and not report.restarted and applied and len(index) == 0:
            report.restarted = "the search index is empty (its folder was removed?)"
        if report.restarted:
            log.warning("search index sync starts over: %s", report.restarted)
            position, applied = 0, 0
        while True:
            events = platform.read_events(session=session, topic=Topic.content, after_id=position, limit=batch)
            if not events:
                break
            touched = {str(event.payload.get("content_id") or event.payload.get("item_id") or "")
                       for _, event in events} - {""}
            current = platform.searchable_content(session=session, content_ids=touched)
            report.indexed += index.upsert([
                ContentItem(item_id=item.content_id, course_id=item.course_id, title=item.title, body=item.body,
                            kind=item.kind) for item in current.values()])
            report.removed += index.delete(sorted(touched - set(current)))
            position, applied = events[-1][0], applied + len(events)
            _write_cursor(settings, position, applied)  # only once the index holds the batch
            report.events += len(events)
            report.position = position
    return report


def start_indexer(*, settings: Settings | None = None,
                  poll_seconds: float = 2.0) -> tuple[threading.Thread, threading.Event]:
    """Run :func:`sync_once` every ``poll_seconds`` in a daemon thread until the returned event is set. A failed
    pass (the index or the database down) is logged and retried on the next one; its events stay after the
    cursor."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                report = sync_once(settings=settings)
                if report.events:
                    log.info("search index sync: %s", report.as_dict())
            except Exception:
                log.exception("search index sync failed; retrying in %.0f s", poll_seconds)
            stop.wait(poll_seconds)

    thread = threading.Thread(target=run, name="search-indexer", daemon=True)
    thread.start()
    return thread, stop
