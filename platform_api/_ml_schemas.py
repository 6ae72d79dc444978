"""Response schemas of the ML-facing routes (risk, search, recommendations)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

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
    score: float = Field(description="fused BM25 + dense score, relative to this query's other candidates (orders "
                                     "the hits; not comparable across queries)")
    bm25_score: float = Field(description="the BM25 component, min-max normalised over this query's candidates")
    dense_score: float = Field(description="the dense component, min-max normalised over this query's candidates")
    similarity: float | None = Field(None, description="cosine similarity of the query's and the item's embeddings "
                                     "(absolute: about 0.5 and up is a good match); null when only BM25 found it")
    lexical_match: bool = Field(False, description="the item shares a word with the query")
    access: Literal["open", "enroll"] = Field("open", description="'open': you may open the item now "
                                              "(GET /api/v1/content/{item_id}); 'enroll': it is in a public course "
                                              "you are not enrolled in (POST /api/v1/courses/{course_id}/enrollments)")
    url: str | None = None


class SearchResultsPublic(BaseModel):
    query: str
    data: list[SearchHitPublic]
    count: int
    unavailable: str | None = Field(None, description="Set when the search index could not answer: the results are "
                                    "the documented fallback (a plain word match over the courses' content, "
                                    "`mode` 'lexical') and the header X-Learnloop-Fallback is "
                                    "'search-unavailable'; the text says what to do")
    mode: Literal["hybrid", "lexical"] = Field("hybrid", description="'hybrid': BM25 + meaning (the search index); "
                                               "'lexical': the index could not answer, the hits share words with "
                                               "the query (content in the platform database only)")


class RecommendedItemPublic(BaseModel):
    item_id: str = Field(description="a content item id of the course (GET /api/v1/content/{id})")
    title: str
    kind: str
    planned_week: int | None = Field(None, description="the course week the instructor planned the item for")
    score: float
    reason: str


class CatchUpPublic(BaseModel):
    assessment_id: uuid.UUID
    title: str
    due_at: datetime
    due_week: int = Field(description="the course week the assessment is due in (1 = the first)")
    items: list[str] = Field(description="the first items of the list: planned up to this week, before the "
                                         "assessment, and not opened yet")


class RecommendationsPublic(BaseModel):
    user_id: uuid.UUID
    course_id: uuid.UUID
    experiment: str | None = Field(description="the A/B experiment; null on the fallback")
    variant: str | None = Field(description="the learner's arm (control = popularity, treatment = learnloop ranker), "
                                            "deterministic by user hash; null on the fallback")
    cold_start: bool = Field(description="the learner has opened nothing yet: popularity within course and week")
    data: list[RecommendedItemPublic]
    fallback: str | None = Field(None, description="set when the recommender could not answer: the list is the most "
                                 "opened items (header X-Learnloop-Fallback: recommendations-popularity)")
    catch_up: CatchUpPublic | None = Field(
        None, description="the assessment due next that the first items prepare for (items the course plan puts "
                          "before it, up to this week, that the learner has not opened); null when none")
