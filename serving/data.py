"""Plain data crossing the ``serving`` boundary: what a risk answer is and how it was produced, and the wire form
of a course's content opens (``POST /recommend``; built by ``serving.api.encode_opens``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import BaseModel, Field, PrivateAttr, model_validator


class PredictionStatus(StrEnum):
    """How a risk answer was produced."""

    scored = "scored"  # the champion scored the registration's online features
    cold_start = "cold_start"  # enrolled but no activity/assessment features yet: scored on what exists, flagged
    unavailable = "unavailable"  # the model service could not answer; the documented fallback (no score)


class RiskRefusal(StrEnum):
    """Why the service declined to score (answered with HTTP 404 and this code)."""

    unknown_student = "unknown_student"
    unknown_course = "unknown_course"
    not_enrolled = "not_enrolled"


@dataclass(frozen=True)
class RiskPrediction:
    """A risk answer for one (student, course) registration.

    ``risk_score`` is P(withdraw or fail) in [0, 1], or None when ``status`` is ``unavailable`` (the fallback the
    platform shows as "risk unavailable"). ``model_version`` is the registry version that produced the score.
    """

    student_id: int
    course_id: str
    risk_score: float | None
    status: PredictionStatus
    model_name: str | None = None
    model_version: str | None = None
    reason: str | None = None
    latency_ms: float | None = None

    @property
    def is_fallback(self) -> bool:
        return self.status is PredictionStatus.unavailable


class ServedModelStatus(StrEnum):
    """Whether the model service can use a model (``POST /admin/models``)."""

    loaded = "loaded"  # in memory and answering
    not_loaded = "not_loaded"  # ready to load at its first request (the ranker, an essay grader)
    degraded = "degraded"  # answering, but not as intended (an older version kept, a slower path): see detail
    unavailable = "unavailable"  # nothing to serve (no champion, no file, a load that failed): the route's fallback


class ServedModel(BaseModel):
    """One model the service serves, as the answering worker holds it (each worker loads its own copy)."""

    name: str = Field(description="risk, recommender, essay_grader_p<prompt>: the name in the prediction log")
    route: str = Field(description="the API that uses it")
    status: ServedModelStatus
    version: str | None = Field(None, description="the registry version (risk, recommender) or the grader's version")
    alias: str | None = Field(None, description="the registry alias the service follows (champion); None for "
                                                "essay graders, which are served from their folder")
    source: str | None = Field(None, description="models:/<name>@<alias>, or the essay grader's folder")
    trained_on: str | None = Field(None, description="essay graders: the essays they learned from")
    trained_at: str | None = Field(None, description="essay graders: when they were trained (ISO 8601, UTC)")
    n_inputs: int | None = Field(None, description="size of the input schema: the features the model takes")
    loaded_at: str | None = Field(None, description="when this worker loaded it (ISO 8601, UTC)")
    detail: str | None = Field(None, description="why it is degraded, unavailable or not loaded yet")


MAX_OPENS = 2_000_000
MAX_DAY = 100_000
_Id = Annotated[str, Field(min_length=1, max_length=128)]
_Index = Annotated[int, Field(ge=0, le=MAX_OPENS)]
# A column packed as base64 of little-endian int32 (what serving.api.encode_opens sends): decoded with numpy, not
# validated element by element, which is most of the parsing time of a large course.
# (binascii's strict mode checks the alphabet and padding in C: a pattern here cost ~7 ms per column of 330k opens).
_Packed = Annotated[str, Field(max_length=4 * ((4 * MAX_OPENS + 2) // 3))]
_T = TypeVar("_T")
_Listed = Annotated[list[_T], Field(max_length=MAX_OPENS)]


def _column(name: str, value: list[int] | str):
    """One per-open column as an int64 array, from a JSON list or a packed base64 string."""
    import binascii

    import numpy as np

    if isinstance(value, list):
        return np.asarray(value, dtype=np.int64)
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except ValueError as exc:  # binascii.Error
        raise ValueError(f"opens: {name} is not valid base64") from exc
    if len(raw) % 4:
        raise ValueError(f"opens: packed {name} must be whole little-endian int32 values, got {len(raw)} bytes")
    return np.frombuffer(raw, dtype="<i4").astype(np.int64)


class Opens(BaseModel):
    """A course's content opens, columnar and dictionary-encoded (``serving.api.encode_opens`` builds it).

    Open ``k`` is learner ``users[user_index[k]]`` opening item ``items[item_index[k]]`` on ``day[k]`` (days since
    the course started). ``user_index``, ``item_index`` and ``day`` are JSON lists of integers or, packed, base64
    strings of little-endian int32 (what the platform sends: a BBB-size course, 280k opens, parses in a few
    milliseconds instead of ~60 ms for the lists, and one object per open was 17 MB)."""

    users: list[_Id] = Field(max_length=MAX_OPENS, description="distinct learner ids")
    items: list[_Id] = Field(max_length=MAX_OPENS, description="distinct item ids")
    user_index: _Listed[_Index] | _Packed = Field(description="per open: position in users (list, or packed int32)")
    item_index: _Listed[_Index] | _Packed = Field(description="per open: position in items (list, or packed int32)")
    day: _Listed[Annotated[int, Field(ge=0, le=MAX_DAY)]] | _Packed = Field(
        description="per open: days since the course started (list, or packed int32)")
    _columns: dict = PrivateAttr(default_factory=dict)  # the index/day columns as int64 arrays, set on validation

    @model_validator(mode="after")
    def _consistent(self) -> Opens:
        columns = {name: _column(name, getattr(self, name)) for name in ("user_index", "item_index", "day")}
        n = len(columns["day"])
        if len(columns["user_index"]) != n or len(columns["item_index"]) != n:
            raise ValueError(f"opens: user_index, item_index and day must have equal lengths, got "
                             f"{len(columns['user_index'])}, {len(columns['item_index'])}, {n}")
        if n > MAX_OPENS:
            raise ValueError(f"opens: at most {MAX_OPENS} opens, got {n}")
        for name in ("users", "items"):
            ids = getattr(self, name)
            if len(set(ids)) != len(ids):
                raise ValueError(f"opens: {name} must be distinct ids (each open points at one by position)")
        for name, high in (("user_index", len(self.users) - 1), ("item_index", len(self.items) - 1),
                           ("day", MAX_DAY)):
            column = columns[name]
            if n and int(column.min()) < 0:
                raise ValueError(f"opens: {name} must be greater than or equal to 0, got {int(column.min())} at "
                                 f"open {int(column.argmin())}")
            if n and int(column.max()) > high:
                what = f"a position in {name.split('_')[0]}s (0 to {high})" if name != "day" else (
                    f"less than or equal to {MAX_DAY}")
                raise ValueError(f"opens: {name} must be {what}, got {int(column.max())} at open "
                                 f"{int(column.argmax())}")
        self._columns = columns
        return self

    def frame(self):
        """DataFrame[user_id, item_id, day] with the opens in request order: the ids categorical (their categories
        ``users`` / ``items``, the codes the indexes as sent: no per-open object is built), days int64."""
        import pandas as pd

        def ids(codes, categories):
            return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype=object))

        return pd.DataFrame({"user_id": ids(self._columns["user_index"], self.users),
                             "item_id": ids(self._columns["item_index"], self.items), "day": self._columns["day"]},
                            columns=["user_id", "item_id", "day"])
