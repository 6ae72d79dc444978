"""Response schemas of the ML-facing routes (risk, search, recommendations)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field


class RiskPublic(BaseModel):
    user_id: uuid.UUID
    course_id: uuid.UUID
    risk_score: float | None = Field(description="P(withdraw or fail) in [0, 1]; null when risk is unavailable")
    status: str = Field(description="scored | cold_start | unavailable (the fallback: the model service could not "
                                    "answer; the response then carries the X-Learnloop-Fallback header)")
    model_name: str | None = None
    model_version: str | None = None
    reason: str | None = Field(None, description="why cold start or unavailable")
    fallback: bool = Field(description="true when this is the documented fallback, not a model answer")


class SearchHitPublic(BaseModel):
    item_id: str
    course_id: str
    title: str
    score: float = Field(description="fused BM25 + dense score")
    bm25_score: float
    dense_score: float
    url: str | None = None


class SearchResultsPublic(BaseModel):
    query: str
    data: list[SearchHitPublic]
    count: int
    unavailable: str | None = Field(None, description="Set when the search index could not answer: the results are "
                                    "the documented fallback (none) and the header X-Learnloop-Fallback is "
                                    "'search-unavailable'; the text says what to do")
