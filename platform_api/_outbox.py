"""Transactional outbox and its relay.

Services call :func:`emit` inside the same session (hence the same DB transaction) as the state change,
so an event exists if and only if the change was committed. The relay reads unpublished rows in ``id``
order and hands each to a publisher: the in-process :class:`EventBus` by default, NATS JetStream when
``LEARNLOOP_NATS_URL`` is set. On a publish failure it stops at that row (order is kept), backs off and
retries; rows are marked published only after the broker acknowledged them. A stop between the ack and the mark
publishes those events again: JetStream drops the copies on ``Nats-Msg-Id`` = event id within its duplicate
window (``LEARNLOOP_NATS_DUPLICATE_WINDOW_S``, 2 min), and the consumers skip any later copy by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from learnloop.errors import Unavailable
from learnloop.events import Event, Topic
from platform_api._models import OutboxEvent

log = logging.getLogger("platform_api.outbox")

STREAM_NAME = "LMS_EVENTS"
STREAM_SUBJECTS = ["lms.*.events"]
RELAY_LOCK_KEY = 0x1EA2_100F  # PostgreSQL advisory lock id of the outbox relay


def emit(session: Session, *, event_type: str, user_id: uuid.UUID | str | None = None,
         course_id: uuid.UUID | str | None = None, payload: dict[str, Any] | None = None,
         session_id: str | None = None, timestamp: datetime | None = None,
         source_service: str = "platform_api") -> Event:
    """Add an event to the outbox of ``session``'s transaction (published only if it commits)."""
    fields: dict[str, Any] = {
        "event_type": event_type, "source_service": source_service,
        "user_id": str(user_id) if user_id is not None else None,
        "course_id": str(course_id) if course_id is not None else None,
        "session_id": session_id, "payload": payload or {},
    }
    if timestamp is not None:
        fields["timestamp"] = timestamp
    event = Event(**fields)
    session.add(OutboxEvent(event_id=event.event_id, topic=event.topic.value, event_type=event.event_type,
                            user_id=event.user_id, course_id=event.course_id,
                            envelope=event.model_dump(mode="json")))
    session.info["outbox_dirty"] = True
    return event


class Publisher(Protocol):
    async def publish(self, topic: str, envelope: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


Handler = Callable[[Event], None]


class EventBus:
    """In-process subscribers per topic (``"*"`` receives every topic)."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, topic: Topic | str, handler: Handler) -> Callable[[], None]:
        key = str(topic)
        with self._lock:
            self._handlers[key].append(handler)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._handlers[key].remove(handler)

        return unsubscribe

    async def publish(self, topic: str, envelope: dict[str, Any]) -> None:
        event = Event.model_validate(envelope)
        with self._lock:
            handlers = [*self._handlers.get(topic, ()), *self._handlers.get("*", ())]
        for handler in handlers:
            try:
                handler(event)
            except Exception:  # a broken subscriber must not stall the outbox for everyone else
                log.exception("in-process subscriber %r failed on %s", handler, event.event_id)

    async def close(self) -> None:
        return None


class NatsPublisher:
    """Publishes to NATS JetStream; connects lazily and reconnects after any failure."""

    def __init__(self, url: str, *, stream: str = STREAM_NAME, timeout_s: float = 2.0,
                 duplicate_window_s: float = 120.0) -> None:
        self.url = url
        self.stream = stream
        self.timeout_s = timeout_s
        self.duplicate_window_s = duplicate_window_s
        self._nc = None
        self._js = None
        self._window_warned = False

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        async def _quiet(error: Exception) -> None:  # the relay reports failures itself, once per retry
            log.debug("nats: %r", error)

        # nats-py retries the initial connect forever unless max_reconnect_attempts is positive.
        nc = await asyncio.wait_for(
            nats.connect(self.url, connect_timeout=self.timeout_s, allow_reconnect=False, max_reconnect_attempts=1,
                         reconnect_time_wait=0.1, error_cb=_quiet),
            timeout=4 * self.timeout_s)
        try:
            js = nc.jetstream(timeout=self.timeout_s)
            try:
                # Reuse whatever stream already captures our subjects (an operator may have made a wider one).
                found = await js.find_stream_name_by_subject("lms.users.events")
            except NotFoundError:
                await js.add_stream(StreamConfig(name=self.stream, subjects=STREAM_SUBJECTS,
                                                 max_age=7 * 24 * 3600.0, duplicate_window=self.duplicate_window_s))
            else:
                if found == self.stream:  # ours: follow a changed window (an operator's own stream is left alone)
                    await self._follow_window(js, found)
        except BaseException:
            with contextlib.suppress(Exception):  # a connection that is not kept is closed, never leaked
                await nc.close()
            raise
        self._nc, self._js = nc, js

    async def _follow_window(self, js, stream: str) -> None:
        """Set our stream's duplicate window to the configured one. A refused update (no permission for
        ``$JS.API.STREAM.UPDATE``, or a ``max_age`` shorter than the window) is a warning, never a reason not
        to publish: the consumers count an event id once whatever the window."""
        try:
            config = (await js.stream_info(stream)).config
            if abs((config.duplicate_window or 0) - self.duplicate_window_s) > 1e-3:
                await js.update_stream(dataclasses.replace(config, duplicate_window=self.duplicate_window_s))
                log.info("JetStream stream %s: duplicate window now %.0f s", stream, self.duplicate_window_s)
        except TimeoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - refused by the server: keep its window, publish anyway
            if not self._window_warned:
                self._window_warned = True
                log.warning("JetStream stream %s: could not set the duplicate window to %.0f s (%r); publishing "
                            "with the stream's own window", stream, self.duplicate_window_s, exc)

    async def publish(self, topic: str, envelope: dict[str, Any]) -> None:
        try:
            if self._nc is None or not self._nc.is_connected:
                await self._connect()
            await self._js.publish(topic, json.dumps(envelope).encode(), timeout=self.timeout_s,
                                   headers={"Nats-Msg-Id": str(envelope["event_id"])})
        except Exception as exc:  # nats raises many unrelated types; all mean "not delivered, retry later"
            await self.close()
            raise Unavailable(f"NATS at {self.url} did not accept the event: {exc!r}; it stays in the outbox") \
                from exc

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


def release_lead(connection) -> None:
    """Give up relay leadership. The lock belongs to the DB session, which a pool would keep alive, so unlock
    explicitly before handing the connection back."""
    with contextlib.suppress(Exception):
        connection.exec_driver_sql("SELECT pg_advisory_unlock_all()")
        connection.commit()
    connection.close()


class OutboxRelay:
    """Moves outbox rows to the publisher in order; one relay per database."""

    def __init__(self, sessions: sessionmaker[Session], publisher: Publisher, *, batch_size: int = 200,
                 poll_interval_s: float = 0.5, max_backoff_s: float = 5.0) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.delivered_total = 0
        self.failures_total = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _fetch(self) -> list[tuple[int, str, dict[str, Any]]]:
        with self.sessions() as session:
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.topic, OutboxEvent.envelope)
                .where(OutboxEvent.published_at.is_(None)).order_by(OutboxEvent.id).limit(self.batch_size)
            ).all()
            return [(row.id, row.topic, row.envelope) for row in rows]

    def _mark(self, ids: list[int], failed_id: int | None) -> None:
        with self.sessions() as session, session.begin():
            if ids:
                session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids))
                                .values(published_at=datetime.now(UTC)))
            if failed_id is not None:
                session.execute(update(OutboxEvent).where(OutboxEvent.id == failed_id)
                                .values(attempts=OutboxEvent.attempts + 1))

    async def run_once(self) -> int:
        """Publish every pending event in order; return how many went out. Raises Unavailable on failure."""
        total = 0
        while True:
            rows = await asyncio.to_thread(self._fetch)
            if not rows:
                return total
            delivered: list[int] = []
            for row_id, topic, envelope in rows:
                try:
                    await self.publisher.publish(topic, envelope)
                except Unavailable:
                    # Keep what went out, count the attempt on the stuck row, and stop: order matters.
                    self.failures_total += 1
                    self.delivered_total += len(delivered)
                    await asyncio.to_thread(self._mark, delivered, row_id)
                    raise
                delivered.append(row_id)
            await asyncio.to_thread(self._mark, delivered, None)
            total += len(delivered)
            self.delivered_total += len(delivered)

    def wake(self) -> None:
        """Ask the running relay to look at the outbox now (thread-safe; called after commits)."""
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    def _try_lead(self):
        """On PostgreSQL, only the holder of an advisory lock relays (several API workers, one ordered stream).
        Returns the connection holding the lock (kept open), None when another process leads, or True
        when the database needs no lock (SQLite: one process per file)."""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            return True
        # One lock per database *and* schema (the URL carries the search_path), so separate installations
        # sharing a server do not wait on each other.
        key = RELAY_LOCK_KEY ^ zlib.crc32(engine.url.render_as_string(hide_password=True).encode())
        connection = engine.connect()
        if connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
            connection.commit()
            return connection
        connection.close()
        return None

    async def run_forever(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        leader = await asyncio.to_thread(self._try_lead)
        while leader is None:  # standby until the leading process goes away
            await asyncio.sleep(self.max_backoff_s)
            leader = await asyncio.to_thread(self._try_lead)
        try:
            await self._relay_loop()
        finally:
            if leader is not True:
                await asyncio.to_thread(release_lead, leader)

    async def _relay_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.run_once()
                backoff = 0.1
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as the wake-up
                # completes, and the relay then never stops (an app shutdown right after a commit hung on it).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval_s):
                        await self._wake.wait()
                self._wake.clear()
            except Unavailable as exc:
                log.warning("outbox relay: %s; retrying in %.1fs", exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            except asyncio.CancelledError:
                raise
            except Exception:  # a DB hiccup must not kill the relay; log and retry
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
