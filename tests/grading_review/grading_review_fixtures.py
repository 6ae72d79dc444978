"""Helpers of the grading review tests: a tiny trained essay grader and a platform with one essay course
(a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from learnloop.settings import Settings

PROMPT = 3  # ASAP prompt 3: scores 0–3
PASSWORD = "review-password-123"
ADMIN_PASSWORD = "admin-password-123"


def _grading_fixtures():
    """tests/grading_nlp/grading_fixtures.py (the synthetic ASAP essays), loaded by path."""
    if "grading_fixtures" in sys.modules:
        return sys.modules["grading_fixtures"]
    path = Path(__file__).parents[1] / "grading_nlp" / "grading_fixtures.py"
    spec = importlib.util.spec_from_file_location("grading_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["grading_fixtures"] = module
    spec.loader.exec_module(module)
    return module


def essay(quality: float, seed: int) -> str:
    """A synthetic essay whose length and vocabulary rise with ``quality`` in [0, 1]."""
    return _grading_fixtures().synthetic_essay(quality, np.random.default_rng(seed))


def train_tiny_grader(root: Path) -> Path:
    """Train a few-shot grader for prompt 3 on 60 synthetic essays; returns the data dir holding it."""
    from grading_nlp.api import train_essay_models

    fixtures = _grading_fixtures()
    data_dir = root / "var"
    settings = Settings(data_dir=data_dir)
    settings.ensure_dirs()
    summaries = train_essay_models(fixtures.write_tsv(fixtures.synthetic_essays({PROMPT: 60}), root / "essays.tsv"),
                                   settings=settings)
    assert [s["prompt"] for s in summaries] == [PROMPT] and summaries[0]["kind"] == "few_shot"
    return data_dir


def platform_settings(data_dir: Path, db_path: Path) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{db_path}", env="test", nats_url=None,
                        redis_url=None)
    settings.ensure_dirs()
    return settings


def make_app(settings: Settings):
    from platform_api.api import create_admin, open_session
    from platform_api.main import create_app

    with open_session(settings) as session:
        admin_id = create_admin(session=session, email="admin@review.example", name="Admin", password=ADMIN_PASSWORD)
    return create_app(settings, migrate=False, per_user_per_minute=1_000_000, per_ip_per_minute=1_000_000), admin_id


@dataclass
class Person:
    id: str
    email: str
    headers: dict[str, str]


@dataclass
class Course:
    id: str
    assessment_id: str
    question_id: str


class Api:
    """Short-hands over a TestClient (or any httpx-like client) of the platform API."""

    def __init__(self, client: TestClient | object):
        self.client = client
        self.admin = self._login("admin@review.example", ADMIN_PASSWORD)

    def _login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def person(self, role: str, name: str) -> Person:
        email = f"{role}-{uuid.uuid4().hex[:8]}@review.example"
        response = self.client.post("/api/v1/users", headers=self.admin,
                                    json={"email": email, "name": name, "password": PASSWORD, "role": role})
        assert response.status_code == 201, response.text
        return Person(response.json()["id"], email, self._login(email))

    def essay_course(self, instructor: Person, *, rubric_prompt: int | None = PROMPT,
                     assessment_prompt: int | None = None, title: str = "Essay 1") -> Course:
        response = self.client.post("/api/v1/courses", headers=instructor.headers,
                                    json={"title": f"Writing {uuid.uuid4().hex[:4]}"})
        assert response.status_code == 201, response.text
        course_id = response.json()["id"]
        assert self.client.put(f"/api/v1/courses/{course_id}", headers=instructor.headers,
                               json={"status": "published"}).status_code == 200
        rubric = {"criteria": [{"name": "Ideas", "description": "Answers the prompt with evidence", "points": 2},
                               {"name": "Conventions", "description": "Spelling and punctuation", "points": 1}]}
        if rubric_prompt is not None:
            rubric["essay_set"] = rubric_prompt
        response = self.client.post("/api/v1/questions", headers=instructor.headers, json={
            "course_id": course_id, "kind": "essay", "prompt": "Explain how the setting affects the cyclist.",
            "rubric": rubric})
        assert response.status_code == 201, response.text
        question_id = response.json()["id"]
        metadata = {"essay_prompt": assessment_prompt} if assessment_prompt is not None else {}
        response = self.client.post("/api/v1/assessments", headers=instructor.headers, json={
            "course_id": course_id, "title": title, "kind": "assignment", "question_ids": [question_id],
            "metadata": metadata})
        assert response.status_code == 201, response.text
        return Course(course_id, response.json()["id"], question_id)

    def submit(self, learner: Person, course: Course, text: str, *, enroll: bool = True):
        if enroll:
            self.client.post(f"/api/v1/courses/{course.id}/enrollments", headers=learner.headers)
        return self.client.post("/api/v1/submissions", headers=learner.headers, json={
            "assessment_id": course.assessment_id, "answers": {course.question_id: text}})

    def queue(self, person: Person, course: Course, **params):
        return self.client.get(f"/api/v1/courses/{course.id}/grading-queue", headers=person.headers, params=params)


def queue_essay(settings: Settings, text: str = "The setting is hard on the cyclist. " * 20) -> uuid.UUID:
    """One learner's essay submission queued for AI grading (prompt 3), written through the platform API
    without HTTP or a trained grader (the lease tests grade with stand-ins)."""
    from platform_api import api
    from platform_api.data import NewCourse, NewSubmission, NewUser, UserRole

    with api.open_session(settings) as session:
        teacher, learner = api.create_users(session=session, users=[
            NewUser(email=f"t-{uuid.uuid4().hex[:8]}@review.example", name="Ina", role=UserRole.instructor),
            NewUser(email=f"l-{uuid.uuid4().hex[:8]}@review.example", name="Lee")])
        (course,) = api.create_courses(session=session, courses=[NewCourse(title="Writing", instructor_id=teacher)])
        assessment, question = api.create_essay_assignment(
            session=session, course_id=course, title="Essay 1", prompt="Explain how the setting affects the cyclist.",
            essay_prompt=PROMPT, criteria=[{"name": "Ideas", "description": "Answers the prompt", "points": 3}])
        (submission,) = api.record_submissions(session=session, submissions=[NewSubmission(
            assessment_id=assessment, user_id=learner, answers={str(question): text})])
    return submission


def fixed_grade(score: int):
    """An AI grade of ``score`` on prompt 3's scale, as a stand-in grader returns it."""
    from grading_nlp.data import AiGrade, GradeStatus

    return AiGrade(status=GradeStatus.suggested, score=score, interval=(max(score - 1, 0), min(score + 1, 3)),
                   confidence=0.8, needs_review=False, reasons=[f"stand-in grader scored {score}"],
                   model_version="stand-in", prompt_id=PROMPT, score_range=(0, 3))
