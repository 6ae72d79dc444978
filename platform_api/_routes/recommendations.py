from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from platform_api import _recommendations
from platform_api._ml_schemas import CatchUpPublic, RecommendationsPublic, RecommendedItemPublic
from platform_api._risk import FALLBACK_HEADER
from platform_api.deps import CurrentUser, SessionDep

router = APIRouter(tags=["ml"])


@router.get("/users/{user_id}/recommendations", response_model=RecommendationsPublic,
            responses={409: {"description": "The learner is not enrolled in the course"}},
            summary="What the learner should open next in a course (the learner or the course's staff)")
def recommendations(user_id: uuid.UUID, course_id: Annotated[uuid.UUID, Query(description="The course")],
                    request: Request, response: Response, session: SessionDep, actor: CurrentUser,
                    limit: Annotated[int, Query(ge=1, le=100)] = 10) -> Any:
    """The served list carries its A/B arm (``variant``); when the recommender is unavailable the list is the
    course's most opened items, ``fallback`` says why and the header ``X-Learnloop-Fallback:
    recommendations-popularity`` marks it."""
    served = _recommendations.recommendations(session=session, actor=actor, backend=request.app.state.ml.recommend,
                                              user_id=user_id, course_id=course_id, limit=limit)
    if served.fallback:
        response.headers[FALLBACK_HEADER] = _recommendations.FALLBACK_REASON
    return RecommendationsPublic(
        user_id=served.user_id, course_id=served.course_id, experiment=served.experiment, variant=served.variant,
        cold_start=served.cold_start, fallback=served.fallback,
        data=[RecommendedItemPublic(**asdict(i)) for i in served.items],
        catch_up=None if served.catch_up is None else CatchUpPublic(**asdict(served.catch_up)))
