"""`learnloop demo --no-serve` on synthetic data: every step of the loop, then both services start and stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the demo trains and promotes the risk model: 12.5 min wall at load 15 on 2 cores
def test_demo_runs_the_whole_loop_on_synthetic_data(tmp_path):
    env = {**os.environ, "LEARNLOOP_DATA_DIR": str(tmp_path / "var"), "LEARNLOOP_API_PORT": str(_free_port()),
           "LEARNLOOP_SERVING_PORT": str(_free_port()), "HF_HUB_OFFLINE": "1", "LEARNLOOP_ENV": "test"}
    # Twice: a newcomer runs `make demo` again on the same data dir, and the second run must build on the first.
    for run in (1, 2):
        result = subprocess.run([sys.executable, "-m", "learnloop.cli", "demo", "--no-serve", "--synthetic"],
                                capture_output=True, text=True, env=env, timeout=700, cwd=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"run {run}: {output[-4000:]}"
        assert "Traceback" not in output and "DeprecationWarning" not in output, f"run {run}: {output[-4000:]}"
        for step in ("data", "platform", "features", "train + promote", "search index", "essay grader",
                     "essay review", "interventions"):
            assert f"✓ {step}" in output, f"run {run}: step {step!r} missing:\n{output[-3000:]}"
        assert "learnloop started and answered" in output
        assert (tmp_path / "var" / "mlflow.db").exists()
    assert "champion is v2" in output  # the second run trained and promoted a new version


def test_sigterm_stops_the_demo_like_ctrl_c():
    """`kill <demo>` must reach the demo's cleanup (stopping the services it started in their own sessions)."""
    import signal
    import time

    from learnloop.shutdown import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # not reached: the handler raises as soon as this thread runs Python again
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_demo_gives_its_learners_content_to_open_once(settings):
    """The demo's courses held no content: a learner following the README could enroll and search the catalog but
    had nothing to open and got empty recommendations. The essay course now has readings, added once."""
    import uuid

    from sqlalchemy import select

    from learnloop.demo import ESSAY_READINGS, _essay_readings
    from platform_api._models import ContentItem
    from platform_api.api import create_courses, create_users, open_session
    from platform_api.data import NewCourse, NewUser, UserRole

    instructor, course = uuid.uuid4(), uuid.uuid4()
    with open_session(settings) as session:
        create_users(session=session, users=[NewUser(email="i@example.org", name="I", role=UserRole.instructor,
                                                     password="a-password-1", id=instructor)])
        create_courses(session=session, courses=[NewCourse(title="Essays", instructor_id=instructor, id=course)])
        assert _essay_readings(session, course) == len(ESSAY_READINGS)
        assert _essay_readings(session, course) == 0  # a second demo run adds nothing
        titles = session.scalars(select(ContentItem.title).where(ContentItem.course_id == course)).all()
    assert sorted(titles) == sorted(title for title, _ in ESSAY_READINGS)


def test_the_demo_refuses_a_port_another_server_holds(settings, monkeypatch):
    """With another server on the API's port, the readiness check got that server's answers: the demo said
    'learnloop started and answered' while its own API had failed to bind."""
    from learnloop.demo import DemoContext, _start_services
    from learnloop.settings import get_settings

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        monkeypatch.setenv("LEARNLOOP_API_PORT", str(other.getsockname()[1]))
        monkeypatch.setenv("LEARNLOOP_SERVING_PORT", str(_free_port()))
        get_settings.cache_clear()
        with pytest.raises(SystemExit, match=r"already in use.*LEARNLOOP_API_PORT"):
            _start_services(DemoContext(settings=get_settings(), synthetic=True))


def test_sigterm_stops_the_serving_demo_even_when_its_interrupt_is_lost():
    """`kill <demo>` once left the demo and both services running: the handler ran (SIGTERM was then ignored) but
    its KeyboardInterrupt never reached the wait loop. The loop now also reads the request from a flag."""
    import signal
    import time

    from learnloop.demo import _serve_until_stopped
    from learnloop.shutdown import sigterm_as_interrupt

    service = subprocess.Popen(["sleep", "30"])
    try:
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                pass  # what a finalizer running the handler does with it: the exception goes nowhere
            started = time.monotonic()
            assert _serve_until_stopped([service], poll_seconds=0.05) is True
            assert time.monotonic() - started < 2
        assert service.poll() is None  # the demo's finally stops the services; here the caller does
    finally:
        service.kill()
        service.wait()
