"""Helpers of the platform API tests (a uniquely named module: test dirs never import each other's conftest)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_checks import service_missing

from learnloop.settings import Settings
from platform_api.api import create_admin, open_session
from platform_api.main import create_app

PG_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN_PASSWORD = "admin-password-123"
PASSWORD = "learner-password-123"


def _pg_conninfo() -> str:
    return "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"



def fresh_database_url(kind: str, tmp_dir: Path) -> Iterator[str]:
    """A database nobody else uses: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / f'platform-{uuid.uuid4().hex[:8]}.db'}"
        return
    psycopg = pytest.importorskip("psycopg")
    schema = f"learnloop_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    try:
        # search_path pins every table (and alembic_version) of this run to its own schema.
        yield f"{PG_SERVER_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@dataclass
class Platform:
    """A running app plus helpers to make users, courses and tokens quickly."""

    client: TestClient
    settings: Settings
    admin_headers: dict[str, str]
    admin_id: str
    _tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def app(self):
        return self.client.app

    def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def user(self, role: str = "student", *, name: str = "Test User") -> tuple[str, dict[str, str]]:
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.org"
        response = self.client.post("/api/v1/users", headers=self.admin_headers,
                                    json={"email": email, "name": name, "password": PASSWORD, "role": role})
        assert response.status_code == 201, response.text
        return response.json()["id"], self.login(email)

    def course(self, headers: dict[str, str], *, publish: bool = True, **fields) -> str:
        body = {"title": f"Course {uuid.uuid4().hex[:6]}", **fields}
        response = self.client.post("/api/v1/courses", headers=headers, json=body)
        assert response.status_code == 201, response.text
        course_id = response.json()["id"]
        if publish:
            response = self.client.put(f"/api/v1/courses/{course_id}", headers=headers, json={"status": "published"})
            assert response.status_code == 200, response.text
        return course_id

    def enroll(self, course_id: str, headers: dict[str, str]) -> str:
        response = self.client.post(f"/api/v1/courses/{course_id}/enrollments", headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["id"]


def start_platform(database_url: str, data_dir: Path, *, client_address: tuple[str, int] = ("testclient", 50000),
                   settings_overrides: dict | None = None, **app_kwargs) -> Iterator[Platform]:
    overrides = {"nats_url": None, "redis_url": None, **(settings_overrides or {})}
    settings = Settings(data_dir=data_dir, database_url=database_url, env="test", **overrides)
    settings.ensure_dirs()
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.org"
    with open_session(settings) as session:
        admin_id = create_admin(session=session, email=admin_email, name="Admin", password=ADMIN_PASSWORD)
    app_kwargs.setdefault("per_user_per_minute", 1_000_000)
    app_kwargs.setdefault("per_ip_per_minute", 1_000_000)
    app = create_app(settings, migrate=False, **app_kwargs)
    with TestClient(app, client=client_address) as client:
        response = client.post("/api/v1/auth/login", json={"email": admin_email, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        yield Platform(client=client, settings=settings, admin_headers=headers, admin_id=str(admin_id))


def outbox_hole(p: Platform) -> int:
    """A free outbox position below the newest row: what a transaction that took its position earlier and has not
    committed yet would commit into (the late-commit cases of the outbox readers)."""
    from sqlalchemy import delete, func, select

    from platform_api._models import OutboxEvent
    from platform_api._outbox import emit

    with p.app.state.sessions() as session:
        emit(session, event_type="user.updated", payload={})
        session.commit()
        taken = session.scalar(select(func.max(OutboxEvent.id)))
        emit(session, event_type="user.updated", payload={})  # a newer row above it (SQLite reuses a freed max id)
        session.commit()
        session.execute(delete(OutboxEvent).where(OutboxEvent.id == taken))
        session.commit()
    return taken


def platform_settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings of a platform on ``database_url`` with its data under ``tmp_path``, no NATS, no Redis."""
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, env="test", nats_url=None,
                        redis_url=None)
    settings.ensure_dirs()
    return settings


def queue_essay(session) -> tuple[uuid.UUID, uuid.UUID]:
    """A new instructor's course with one essay assignment (ASAP prompt 3, 3 points) and a new learner's submission
    queued for AI grading: (submission id, question id)."""
    from platform_api import api
    from platform_api.data import NewCourse, NewSubmission, NewUser, UserRole

    teacher, learner = api.create_users(session=session, users=[
        NewUser(email=f"t-{uuid.uuid4().hex[:8]}@example.org", name="Ina", role=UserRole.instructor),
        NewUser(email=f"l-{uuid.uuid4().hex[:8]}@example.org", name="Lee")])
    (course,) = api.create_courses(session=session, courses=[NewCourse(title="W", instructor_id=teacher)])
    assessment, question = api.create_essay_assignment(
        session=session, course_id=course, title="Essay 1", prompt="Explain the setting.", essay_prompt=3,
        criteria=[{"name": "Ideas", "description": "Answers the prompt", "points": 3}])
    (submission,) = api.record_submissions(session=session, submissions=[NewSubmission(
        assessment_id=assessment, user_id=learner, answers={str(question): "The setting is hard. " * 20})])
    return submission, question


def queued_essay(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """:func:`queue_essay` on ``settings``' platform (migrated first)."""
    with open_session(settings) as session:
        return queue_essay(session)


def hold_in_emit(monkeypatch, module, thread_name: str) -> threading.Event:
    """The thread named ``thread_name`` stops for a second in ``module``'s ``emit`` (after its checks, before its
    commit), so a concurrent writer arrives in exactly that window; returns the event set when it is there."""
    inside, emit = threading.Event(), module.emit

    def slow_emit(*args, **kwargs):
        if threading.current_thread().name == thread_name:
            inside.set()
            time.sleep(1.0)
        return emit(*args, **kwargs)

    monkeypatch.setattr(module, "emit", slow_emit)
    return inside
