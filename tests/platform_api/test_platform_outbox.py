"""Transactional outbox: writes never wait for the broker; events arrive later, all of them, in order."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest
from down_services import start_server
from platform_fixtures import BACKENDS, fresh_database_url, start_platform
from service_checks import service_missing
from sqlalchemy import func, select

from learnloop.errors import Unavailable
from learnloop.events import Topic
from platform_api import api
from platform_api._models import OutboxEvent
from platform_api._outbox import EventBus, OutboxRelay, release_lead

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _pending(platform) -> int:
    with platform.app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(OutboxEvent)
                              .where(OutboxEvent.published_at.is_(None))) or 0


def _wait(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _drained(platform, timeout_s: float = 20.0) -> bool:
    return _wait(lambda: _pending(platform) == 0, timeout_s)


def _post_activity(platform, headers, count: int, tag: str) -> list[str]:
    ids = []
    for i in range(count):
        response = platform.client.post("/api/v1/events", headers=headers,
                                        json={"event_type": "page_view", "payload": {"tag": tag, "i": i}})
        assert response.status_code == 202, response.text
        ids.append(response.json()["event_id"])
    return ids


class FlakyBus(EventBus):
    """The in-process bus, but 'down' while ``up`` is False (like a broker outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True

    async def publish(self, topic, envelope):
        if not self.up:
            raise Unavailable("bus is down")
        await super().publish(topic, envelope)


@pytest.mark.parametrize("backend", BACKENDS)
def test_relay_keeps_order_across_an_outage(backend, tmp_path):
    """Same code path as NATS, on both databases: writes succeed while delivery is down; nothing is lost
    or reordered once it is back."""
    for db_url in fresh_database_url(backend, tmp_path):
        for platform in start_platform(db_url, tmp_path / "data", run_relay=False):
            bus = FlakyBus()
            received: list[str] = []
            bus.subscribe(Topic.analytics, lambda event, sink=received: sink.append(str(event.event_id)))
            relay = OutboxRelay(platform.app.state.sessions, bus)
            _, headers = platform.user()
            before = _post_activity(platform, headers, 3, "before")
            assert asyncio.run(relay.run_once()) == 5  # user.created x2 (admin, learner) + 3 activities
            bus.up = False
            during = _post_activity(platform, headers, 5, "during")
            with pytest.raises(Unavailable):
                asyncio.run(relay.run_once())
            assert _pending(platform) == 5
            bus.up = True
            assert asyncio.run(relay.run_once()) == 5
            assert received == before + during
            assert relay.failures_total == 1 and _pending(platform) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_nats(port: int, store: str) -> subprocess.Popen:
    return start_server([NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store], port, "nats-server")


def _stream_event_ids(url: str, wanted: set[str], timeout_s: float = 20.0) -> list[str]:
    """Event ids from the JetStream stream in stream order (only those in ``wanted``)."""
    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    async def read() -> list[str]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            stream = await js.find_stream_name_by_subject("lms.analytics.events")
            sub = await js.pull_subscribe("lms.analytics.events", durable=None, stream=stream,
                                          config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
            found: list[str] = []
            deadline = time.monotonic() + timeout_s
            while len(found) < len(wanted) and time.monotonic() < deadline:
                try:
                    messages = await sub.fetch(500, timeout=1)
                except nats.errors.TimeoutError:
                    continue
                for message in messages:
                    event_id = json.loads(message.data)["event_id"]
                    if event_id in wanted:
                        found.append(event_id)
                    await message.ack()
            return found
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.mark.integration
def test_nats_outage_stop_and_restart(tmp_path):
    """A real nats-server (our own process) is stopped mid-run and restarted: writes keep succeeding, and every
    event arrives exactly once, in order."""
    if not os.path.exists(NATS_SERVER):
        service_missing("nats-server is not installed (Debian package nats-server)")
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    store = str(tmp_path / "jetstream")
    server = _start_nats(port, store)
    try:
        for db_url in fresh_database_url("sqlite", tmp_path):
            for platform in start_platform(db_url, tmp_path / "data", settings_overrides={"nats_url": url}):
                _, headers = platform.user()
                first = _post_activity(platform, headers, 5, "up")
                assert _drained(platform), "relay did not deliver while NATS was up"

                server.terminate()
                server.wait(timeout=10)
                during = _post_activity(platform, headers, 20, "down")  # writes succeed without the broker
                time.sleep(1.0)
                assert _pending(platform) >= 20  # waiting in the outbox
                assert platform.app.state.relay.failures_total >= 1

                server = _start_nats(port, store)
                assert _drained(platform, 30), "outbox did not drain after NATS returned"
                after = _post_activity(platform, headers, 3, "back")
                assert _drained(platform)
                expected = first + during + after
                assert _stream_event_ids(url, set(expected)) == expected  # all, once, in commit order
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.integration
def test_shared_nats_4222_after_connection_failure(tmp_path):
    """Against the machine's NATS on 4222: the relay first points at a closed port (delivery fails, writes
    succeed), then at 4222; every event arrives in order."""
    url = "nats://127.0.0.1:4222"
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", 4222)) != 0:
            service_missing("NATS is not running on 127.0.0.1:4222")
    closed = f"nats://127.0.0.1:{_free_port()}"
    for db_url in fresh_database_url("sqlite", tmp_path):
        for platform in start_platform(db_url, tmp_path / "data", settings_overrides={"nats_url": closed}):
            _, headers = platform.user()
            written = _post_activity(platform, headers, 10, f"run-{uuid.uuid4().hex[:6]}")
            time.sleep(0.5)
            assert _pending(platform) >= 10 and platform.app.state.relay.failures_total >= 1
            platform.app.state.relay.publisher.url = url  # the broker "comes back"
            assert _drained(platform, 30)
            assert _stream_event_ids(url, set(written)) == written


def test_relay_pending_api_publishes_to_in_process_bus(platform):
    bus = EventBus()
    got: list[str] = []
    bus.subscribe("*", lambda event: got.append(event.event_type))
    with api.open_session(platform.settings, migrate_first=False) as session:
        api.emit_event(session=session, event_type="intervention.alert_raised", payload={"risk": 0.9})
    # The app's relay may win the race; either way the row ends up published exactly once.
    api.relay_pending(platform.settings, bus=bus)
    assert _drained(platform)


@pytest.mark.integration
def test_only_one_relay_leads_on_postgresql(tmp_path):
    """Several API workers on one PostgreSQL database: one relay publishes, the others stand by."""
    for db_url in fresh_database_url("postgresql", tmp_path):
        for platform in start_platform(db_url, tmp_path / "data", run_relay=False):
            first = OutboxRelay(platform.app.state.sessions, EventBus())
            second = OutboxRelay(platform.app.state.sessions, EventBus())
            leader = first._try_lead()
            try:
                assert leader not in (None, True)
                assert second._try_lead() is None
            finally:
                release_lead(leader)
            again = second._try_lead()  # the standby takes over once the leader lets go
            assert again not in (None, True)
            release_lead(again)


def test_read_events_can_leave_imported_rows_out_in_the_query(platform):
    """``read_events(imported=False)``: what training reads of live activity (imports are in their data set)."""
    import uuid

    from platform_api._outbox import emit
    from platform_api.api import read_events

    course = str(uuid.uuid4())
    with platform.app.state.sessions() as session:
        emit(session, event_type="resource_click", course_id=course, payload={"content_id": "x", "import": True})
        emit(session, event_type="resource_click", course_id=course, payload={"content_id": "y"})
        emit(session, event_type="resource_click", course_id=course, payload={"content_id": "z", "import": False})
        session.commit()
        everything = read_events(session=session, topic="lms.analytics.events", limit=100_000)
        live = read_events(session=session, topic="lms.analytics.events", limit=100_000, imported=False)
    mine = lambda rows: [e.payload["content_id"] for _, e in rows if e.course_id == course]  # noqa: E731
    assert mine(everything) == ["x", "y", "z"] and mine(live) == ["y", "z"]


def test_the_relay_stops_when_cancelled_as_a_wake_up_arrives(tmp_path):
    """A commit's wake-up and the app's shutdown in the same loop turn: the relay must still stop (on Python 3.11
    ``asyncio.wait_for`` swallowed that cancellation and the shutdown hung)."""
    for db_url in fresh_database_url("sqlite", tmp_path):
        for platform in start_platform(db_url, tmp_path / "data", run_relay=False):
            relay = OutboxRelay(platform.app.state.sessions, EventBus(), poll_interval_s=30)

            async def scenario(relay: OutboxRelay) -> bool:
                task = asyncio.create_task(relay.run_forever())
                for _ in range(200):  # until it waits for a wake-up
                    await asyncio.sleep(0.01)
                    if relay._wake is not None and relay._wake._waiters:
                        break
                relay._wake.set()
                task.cancel()
                try:
                    await asyncio.wait_for(task, timeout=5)
                except asyncio.CancelledError:
                    return True
                except TimeoutError:
                    return False
                return False

            assert asyncio.run(scenario(relay)), "the relay kept running after it was cancelled"


@pytest.mark.integration
def test_the_relay_stream_follows_the_configured_duplicate_window(tmp_path):
    """``LEARNLOOP_NATS_DUPLICATE_WINDOW_S`` applies to the relay's own stream when it is created and when it is
    changed later; a stream an operator made for our subjects under another name is left as it is."""
    from nats.js.api import StreamConfig

    from platform_api._outbox import STREAM_NAME, STREAM_SUBJECTS, NatsPublisher

    if not os.path.exists(NATS_SERVER):
        service_missing("nats-server is not installed (Debian package nats-server)")
    port = _free_port()
    server = _start_nats(port, str(tmp_path / "jetstream"))
    url = f"nats://127.0.0.1:{port}"

    async def window_after_publishing(window_s: float) -> float:
        publisher = NatsPublisher(url, duplicate_window_s=window_s)
        try:
            await publisher.publish("lms.users.events", {"event_id": str(uuid.uuid4())})
            stream = await publisher._js.find_stream_name_by_subject("lms.users.events")
            return (await publisher._js.stream_info(stream)).config.duplicate_window
        finally:
            await publisher.close()

    async def operator_stream() -> None:
        import nats

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.delete_stream(STREAM_NAME)
            await js.add_stream(StreamConfig(name="OPERATORS_LMS", subjects=STREAM_SUBJECTS, duplicate_window=30.0))
        finally:
            await nc.close()

    try:
        assert asyncio.run(window_after_publishing(120.0)) == 120.0
        assert asyncio.run(window_after_publishing(3600.0)) == 3600.0
        asyncio.run(operator_stream())
        assert asyncio.run(window_after_publishing(3600.0)) == 30.0
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.integration
def test_a_refused_window_update_still_publishes_and_leaks_no_connection(tmp_path):
    """Our stream with a ``max_age`` shorter than the configured duplicate window refuses the window update: the
    relay publishes with the stream's own window (it used to fail every publish, forever), and a connect that fails
    closes its connection instead of leaving one open per retry."""
    import urllib.request

    import nats
    from nats.js.api import StreamConfig

    from platform_api._outbox import STREAM_NAME, STREAM_SUBJECTS, NatsPublisher

    if not os.path.exists(NATS_SERVER):
        service_missing("nats-server is not installed (Debian package nats-server)")
    port, monitor = _free_port(), _free_port()
    server = subprocess.Popen([NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor),
                               "-sd", str(tmp_path / "jetstream")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"

    def connections() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz", timeout=5) as answer:
            return json.load(answer)["num_connections"]

    async def scenario() -> tuple[int, float]:
        for _ in range(100):
            try:
                nc = await nats.connect(url)
                break
            except Exception:  # noqa: BLE001 - the server is starting
                await asyncio.sleep(0.1)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM_NAME, subjects=STREAM_SUBJECTS, max_age=60.0,
                                         duplicate_window=60.0))
        await nc.close()
        published = 0
        for _ in range(3):
            publisher = NatsPublisher(url, duplicate_window_s=120.0)
            try:
                await publisher.publish("lms.users.events", {"event_id": str(uuid.uuid4())})
                published += 1
            finally:
                await publisher.close()
        nc = await nats.connect(url)
        window = (await nc.jetstream().stream_info(STREAM_NAME)).config.duplicate_window
        await nc.close()
        return published, window

    try:
        published, window = asyncio.run(scenario())
        assert published == 3
        assert window == 60.0
        deadline = time.monotonic() + 5
        while connections() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert connections() == 0
    finally:
        server.terminate()
        server.wait(timeout=10)
