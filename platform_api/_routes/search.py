from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from platform_api import _search
from platform_api._ml_schemas import SearchHitPublic, SearchResultsPublic
from platform_api._risk import FALLBACK_HEADER
from platform_api.deps import CurrentUser, SessionDep, SettingsDep

router = APIRouter(tags=["ml"])


@router.get("/search", response_model=SearchResultsPublic,
            summary="Hybrid content search over the courses you may see")
def search(q: Annotated[str, Query(min_length=1, max_length=500, description="What to look for")],
           request: Request, response: Response, session: SessionDep, settings: SettingsDep, actor: CurrentUser,
           course_id: Annotated[uuid.UUID | None, Query(description="Only this course")] = None,
           limit: Annotated[int, Query(ge=1, le=100)] = 10) -> Any:
    """Hits in public courses you are not enrolled in are included so you can find what to enroll in; each hit's
    ``access`` says whether you may open it now. A query with no answer gets no hits (an item that shares no word
    with it must be close in meaning), not the least bad ones.

    When the search index is down the answer is still 200: ``mode`` "lexical", the hits share words with the query
    (the courses' content in the platform database, no search by meaning), ``unavailable`` says why and what to do,
    and the header ``X-Learnloop-Fallback: search-unavailable`` marks it."""
    outcome = _search.search_content(session=session, actor=actor, settings=settings,
                                  backend=request.app.state.ml.search, query=q, course_id=course_id, limit=limit)
    data = [SearchHitPublic(item_id=h.item_id, course_id=h.course_id, title=h.title, score=h.score,
                            bm25_score=h.bm25_score, dense_score=h.dense_score,
                            similarity=h.similarity, lexical_match=h.lexical_match,
                            access="open" if h.course_id in outcome.readable else "enroll", url=h.url)
            for h in outcome.hits]
    if outcome.unavailable:
        response.headers[FALLBACK_HEADER] = "search-unavailable"
    return SearchResultsPublic(query=q, data=data, count=len(data), unavailable=outcome.unavailable,
                               mode=outcome.mode)
