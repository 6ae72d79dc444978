from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from platform_api import _risk
from platform_api._ml_schemas import RiskPublic
from platform_api.deps import CurrentUser, SessionDep

router = APIRouter(tags=["ml"])


@router.get("/users/{user_id}/risk", response_model=RiskPublic,
            responses={404: {"description": "Unknown user or course, or the model service has no record"},
                       409: {"description": "Not enrolled, or not linked to the model's learner/course ids"}},
            summary="The learner's at-risk score in a course (the learner or the course's staff)")
def learner_risk(user_id: uuid.UUID, course_id: Annotated[uuid.UUID, Query(description="The course")],
                 request: Request, response: Response, session: SessionDep, actor: CurrentUser) -> Any:
    """When the model service is down or its circuit is open the answer is still 200: ``risk_score`` null,
    ``status`` "unavailable", and the header ``X-Learnloop-Fallback: risk-unavailable``."""
    answer = _risk.learner_risk(session=session, actor=actor, client=request.app.state.risk_client,
                                user_id=user_id, course_id=course_id)
    prediction = answer.prediction
    if prediction.is_fallback:
        response.headers[_risk.FALLBACK_HEADER] = "risk-unavailable"
    return RiskPublic(user_id=answer.user_id, course_id=answer.course_id, risk_score=prediction.risk_score,
                      status=prediction.status.value, model_name=prediction.model_name,
                      model_version=prediction.model_version, reason=prediction.reason,
                      fallback=prediction.is_fallback)
