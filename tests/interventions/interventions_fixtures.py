"""The interventions test world: a Feast online store with known learners, a small risk champion trained on
synthetic data whose label follows missed work, inactivity and clicks (registered + promoted through
``training.api``, ONNX through ``models.api``), and a platform database with two linked courses."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from learnloop.settings import Settings

SERVICE = "student_risk_v1"
COURSE_A, COURSE_B = "AAA-2013J", "BBB-2013J"
PASSWORD = "interventions-pass-123"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

TYPICAL = {"n_due": 3.0, "n_missed": 0.0, "n_submitted": 3.0, "n_late": 0.0, "days_since_last_activity": 1.0,
           "clicks_total_28d": 120.0, "clicks_total_cum": 480.0, "has_click_data": 1.0, "score_mean": 68.0,
           "studied_credits": 60.0, "active_days_28d": 12.0}
# Learners of course A: two clearly at risk (known drivers), one borderline, nine typical.
LEARNERS_A = {
    2001: {"n_missed": 3.0, "n_submitted": 0.0, "days_since_last_activity": 20.0, "clicks_total_28d": 6.0,
           "clicks_total_cum": 60.0, "active_days_28d": 1.0},
    2002: {"n_missed": 2.0, "n_submitted": 1.0, "days_since_last_activity": 12.0, "clicks_total_28d": 36.0,
           "clicks_total_cum": 200.0, "active_days_28d": 3.0},
    **{2003 + i: {"days_since_last_activity": 1.0 + (i % 3), "clicks_total_28d": 110.0 + 5 * i} for i in range(10)},
}
LEARNERS_B = {3001: {"n_missed": 3.0, "n_submitted": 0.0, "days_since_last_activity": 25.0, "clicks_total_28d": 3.0,
                     "clicks_total_cum": 20.0, "active_days_28d": 0.0},
              **{3002 + i: {} for i in range(3)}}
NO_FEATURES_STUDENT = 2099  # linked to course A, but the feature store knows nothing of them


@dataclass
class World:
    settings: Settings
    course_a: uuid.UUID
    course_b: uuid.UUID
    instructor_a: str  # emails; every account has PASSWORD
    instructor_b: str
    learner_2001: str
    user_ids: dict[int, uuid.UUID]
    first_run: dict = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _training_frame(names: list[str], n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(0.0, index=range(n), columns=names)
    due = rng.integers(1, 6, n).astype(float)
    missed = rng.binomial(due.astype(int), rng.beta(1.2, 4.0, n)).astype(float)
    days = np.minimum(rng.exponential(5.0, n), 60.0).round()
    clicks = rng.gamma(2.0, 55.0, n).round()
    frame["n_due"], frame["n_missed"], frame["n_submitted"] = due, missed, due - missed
    frame["days_since_last_activity"], frame["clicks_total_28d"] = days, clicks
    frame["clicks_total_cum"] = clicks * 4
    frame["active_days_28d"] = np.clip(14 - days / 2 + rng.normal(0, 2, n), 0, 28).round()
    frame["has_click_data"] = 1.0
    frame["score_mean"] = np.clip(rng.normal(65, 12, n), 0, 100)
    frame["studied_credits"] = rng.choice([60.0, 120.0], n)
    logit = -1.6 + 3.0 * missed / due + 0.12 * days - 0.012 * clicks
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def train_champion(settings: Settings, names: list[str]) -> str:
    """A 60-tree GBM on the FeatureService's columns, exported to ONNX (parity checked), force-promoted."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from models.api import ModelSchema, export_sklearn_classifier, infer_inputs, model_frame
    from training.api import promote, register_onnx_model

    frame = _training_frame(names, 1500, seed=5)
    schema = ModelSchema(inputs=infer_inputs(frame, names), feature_service=SERVICE, feature_service_version="1")
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([("numeric", SimpleImputer(strategy="median"), names)])),
        ("gbm", GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)),
    ]).fit(model_frame(frame, schema.inputs), frame["label"])
    export = export_sklearn_classifier(pipeline, frame.iloc[:200], schema)
    info = register_onnx_model(name="risk", export=export, metrics={"auc": 0.8, "ece": 0.02},
                               train_fingerprint="interventions-train", eval_fingerprint="eval", settings=settings)
    promote("risk", force_reason="interventions test fixture", settings=settings)
    return info.version


def write_online_store(settings: Settings) -> None:
    """Every learner's features: the typical values, their overrides, zeros elsewhere."""
    from features import api as features_api

    store = features_api.get_store(settings)
    features_api.apply(store)
    stamp = NOW.replace(microsecond=0) - timedelta(days=1)
    registrations = {f"{s}:{COURSE_A}": {**TYPICAL, **o} for s, o in LEARNERS_A.items()}
    registrations |= {f"{s}:{COURSE_B}": {**TYPICAL, **o} for s, o in LEARNERS_B.items()}
    students = [*LEARNERS_A, *LEARNERS_B]
    for view in features_api.view_names():
        key = features_api.view_join_key(view)
        names = features_api.view_features(view)
        if key == "student_course":
            frame = pd.DataFrame([{key: k, **{n: float(v.get(n, 0.0)) for n in names}}
                                  for k, v in registrations.items()])
        elif key == "id_student":
            frame = pd.DataFrame([{key: s, **{n: 0.0 for n in names}} for s in students])
        elif key == "course":
            frame = pd.DataFrame([{key: c, **{n: 0.0 for n in names}} for c in (COURSE_A, COURSE_B)])
        else:
            continue
        frame["event_timestamp"] = stamp
        frame["created_timestamp"] = stamp
        store.write_to_online_store(view, frame)


def seed_platform(settings: Settings) -> World:
    """Two linked courses with their instructors and learners, an unlinked learner, an assessment due soon."""
    from platform_api.api import create_assessments, create_courses, create_users, enroll_users, open_session
    from platform_api.data import NewAssessment, NewCourse, NewEnrollment, NewUser, UserRole

    def student(s: int) -> NewUser:
        return NewUser(email=f"learner{s}@example.org", name=f"Learner {s}", password=PASSWORD,
                       metadata={"id_student": s}, id=uuid.uuid5(uuid.NAMESPACE_URL, f"interventions/{s}"))

    with open_session(settings) as session:
        ia, ib = uuid.uuid4(), uuid.uuid4()
        create_users(session=session, users=[
            NewUser(email="instructor-a@example.org", name="Instructor A", role=UserRole.instructor,
                    password=PASSWORD, id=ia),
            NewUser(email="instructor-b@example.org", name="Instructor B", role=UserRole.instructor,
                    password=PASSWORD, id=ib)])
        learners = [*LEARNERS_A, NO_FEATURES_STUDENT, *LEARNERS_B]
        create_users(session=session, users=[student(s) for s in learners] + [
            NewUser(email="unlinked@example.org", name="Unlinked Learner", password=PASSWORD,
                    id=uuid.uuid5(uuid.NAMESPACE_URL, "interventions/unlinked"))])
        course_a, course_b = create_courses(session=session, courses=[
            NewCourse(title="Module AAA", instructor_id=ia, metadata={"presentation": COURSE_A}),
            NewCourse(title="Module BBB", instructor_id=ib, metadata={"presentation": COURSE_B})])
        ids = {s: student(s).id for s in learners}
        enroll_users(session=session, enrollments=[
            *(NewEnrollment(user_id=ids[s], course_id=course_a) for s in [*LEARNERS_A, NO_FEATURES_STUDENT]),
            NewEnrollment(user_id=uuid.uuid5(uuid.NAMESPACE_URL, "interventions/unlinked"), course_id=course_a),
            *(NewEnrollment(user_id=ids[s], course_id=course_b) for s in LEARNERS_B)])
        (assessment,) = create_assessments(session=session, assessments=[
            NewAssessment(course_id=course_a, title="TMA 2")])
        from platform_api._models import Assessment  # the bulk API takes no due date; set it on the row

        session.get(Assessment, assessment).due_at = NOW + timedelta(days=5)
        session.commit()
    return World(settings=settings, course_a=course_a, course_b=course_b, instructor_a="instructor-a@example.org",
                 instructor_b="instructor-b@example.org", learner_2001="learner2001@example.org", user_ids=ids)
