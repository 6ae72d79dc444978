"""At-risk score of a learner in a course, from the model service (``serving.api.RiskClient``).

The model service knows learners and courses by their model-side keys (OULAD ``id_student`` and the
module-presentation code such as ``AAA-2013J``); the platform keeps them in metadata: ``users.metadata
["id_student"]`` and ``courses.metadata["presentation"]`` (set by the import that created them).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from learnloop.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from platform_api import _courses, policy
from platform_api._db import get_or_not_found
from platform_api._models import Enrollment, User
from platform_api.data import EnrollmentStatus
from platform_api.policy import Principal
from serving.api import FALLBACK_HEADER, PredictionStatus, RiskClient, RiskPrediction

__all__ = ["FALLBACK_HEADER", "RiskAnswer", "learner_risk"]

log = logging.getLogger("platform_api.risk")

STUDENT_KEY = "id_student"
COURSE_KEY = "presentation"


@dataclass(frozen=True)
class RiskAnswer:
    user_id: uuid.UUID
    course_id: uuid.UUID
    prediction: RiskPrediction


def _model_keys(user: User, course) -> tuple[int, str]:
    student = (user.metadata_ or {}).get(STUDENT_KEY)
    presentation = (course.metadata_ or {}).get(COURSE_KEY)
    if isinstance(student, bool) or not isinstance(student, int | str) or not str(student).isdigit():
        raise Conflict(f"User {user.id} has no model-side learner id (metadata.{STUDENT_KEY}); risk is scored "
                       f"for learners imported with their id — set metadata.{STUDENT_KEY} with PUT /api/v1/users/"
                       f"{user.id}", details={"field": f"metadata.{STUDENT_KEY}"})
    if not isinstance(presentation, str) or not presentation:
        raise Conflict(f"Course {course.id} is not linked to a model-side presentation (metadata.{COURSE_KEY}, "
                       f"e.g. 'AAA-2013J'); set it with PUT /api/v1/courses/{course.id}",
                       details={"field": f"metadata.{COURSE_KEY}"})
    return int(student), presentation


def learner_risk(*, session: Session, actor: Principal | None, client: RiskClient, user_id: uuid.UUID,
                 course_id: uuid.UUID) -> RiskAnswer:
    """The learner's risk in a course: for the learner themself or the course's staff only (FERPA).

    The model service being down is not an error here: the answer is the client's documented fallback
    (``prediction.is_fallback``), which the route turns into a 200 with ``X-Learnloop-Fallback``.
    """
    course = _courses.get_course(session=session, actor=actor, course_id=course_id)
    user = get_or_not_found(session, User, user_id, "User")
    if actor is not None and actor.id != user.id and not policy.is_course_staff(session, actor, course):
        # Learners never see another learner's risk, whatever else they may see of them.
        raise PermissionDenied("Only the learner themself and the course's staff may see a learner's risk",
                               details={"course_id": str(course.id)})
    status = session.scalar(select(Enrollment.status).where(Enrollment.user_id == user.id,
                                                            Enrollment.course_id == course.id))
    if status not in (EnrollmentStatus.enrolled, EnrollmentStatus.completed):
        state = status.value if status is not None else "not enrolled"
        raise Conflict(f"User {user.id} is {state} in course {course.id}; risk is scored for active enrollments "
                       "only (enroll with POST /api/v1/courses/{id}/enrollments)",
                       details={"enrollment_status": status.value if status is not None else None})
    student_id, presentation = _model_keys(user, course)
    try:
        prediction = client.predict_risk(student_id=student_id, course_id=presentation)
    except NotFound as exc:
        raise NotFound(f"The model service has no record of learner {user.id} in course {course.id} "
                       f"({exc.message}); their features are computed after the next pipeline run",
                       details={"id_student": student_id, "presentation": presentation}) from exc
    except InvalidInput:
        raise
    except Exception as exc:  # an answer the client cannot read (wrong shape, bad status): still the fallback
        log.exception("unreadable answer from the model service")
        prediction = RiskPrediction(student_id=student_id, course_id=presentation, risk_score=None,
                                    status=PredictionStatus.unavailable,
                                    reason=f"unreadable answer from the model service: {type(exc).__name__}")
    return RiskAnswer(user_id=user.id, course_id=course.id, prediction=prediction)
