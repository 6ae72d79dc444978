"""Learner activity ingestion: page views, video plays, resource clicks → ``lms.analytics.events``; and reading
back who opened which content item (what recommendations and the course plan count)."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from learnloop.errors import InvalidInput
from learnloop.events import Event, Topic
from platform_api import policy
from platform_api._db import get_or_not_found
from platform_api._models import ContentItem, Course, OutboxEvent
from platform_api._outbox import emit
from platform_api._schemas import ActivityEventCreate
from platform_api.data import ActivityType
from platform_api.policy import Permission, Principal, Scope

if TYPE_CHECKING:
    import pandas as pd

# Activity that means "the learner opened this item" (the implicit feedback the recommender learns from).
OPENS = (ActivityType.content_view, ActivityType.resource_click, ActivityType.page_view, ActivityType.video_play,
         ActivityType.video_complete)


def ingest_activity(*, session: Session, actor: Principal, data: ActivityEventCreate) -> Event:
    policy.require_global(actor, Permission.events_ingest)
    course_id = data.course_id
    if data.content_id is not None:
        content = get_or_not_found(session, ContentItem, data.content_id, "Content")
        if course_id is not None and content.course_id != course_id:
            raise InvalidInput(f"Content {content.id} belongs to course {content.course_id}, not {course_id}",
                               details={"field": "course_id"})
        course_id = content.course_id
    if course_id is not None:
        course = get_or_not_found(session, Course, course_id, "Course")
        # Activity counts only for people who can see the course's content (learners, staff).
        policy.authorize(session, actor, Permission.content_read, Scope.of_course(course),
                         what="recording activity in this course (enroll first)")
    payload = dict(data.payload)
    if data.content_id is not None:
        payload["content_id"] = str(data.content_id)
    event = emit(session, event_type=data.event_type.value, user_id=actor.id, course_id=course_id,
                 session_id=data.session_id, timestamp=data.timestamp, payload=payload,
                 source_service="platform_api.activity")
    session.commit()
    return event


class _CourseOpens:
    """Every open of one course's content, read from the outbox once and then only what was added since.

    Rows up to ``stable_id`` (written more than ``SETTLE`` ago) are kept; newer rows are read again on every
    refresh, so a row whose transaction commits after a later id's (possible on PostgreSQL) is still picked up.
    A row that commits later still (a long import) is caught by counting the kept range again every
    ``VERIFY_EVERY``: a different count rebuilds the cache. So does an erasure (``user.erased`` rewrites user ids in
    place)."""

    SETTLE = timedelta(seconds=60)
    VERIFY_EVERY = timedelta(seconds=10)
    FUTURE_SLACK = timedelta(days=1)  # opens stamped later than this after now are skipped (clock skew of imports)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset(None)

    def _reset(self, erasures: tuple | None) -> None:
        self.erasures = erasures
        self.stable_id = 0
        self.stable_rows = 0  # outbox rows up to stable_id (opens without a user or item included)
        self.stable: pd.DataFrame | None = None  # user_id, item_id (categories), at (aware UTC)
        self.verified = datetime.now(UTC)

    def _where(self, course_id: str) -> tuple:
        return (OutboxEvent.course_id == course_id, OutboxEvent.event_type.in_([o.value for o in OPENS]),
                OutboxEvent.topic == str(Topic.analytics))

    def refresh(self, session: Session, course_id: str) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        erasures = tuple(session.execute(select(func.count(), func.max(OutboxEvent.id)).where(
            OutboxEvent.course_id.is_(None), OutboxEvent.event_type == "user.erased")).one())
        now = datetime.now(UTC)
        with self.lock:
            if erasures != self.erasures:
                self._reset(erasures)
            elif self.stable_id and now - self.verified > self.VERIFY_EVERY:
                kept = session.scalar(select(func.count()).select_from(OutboxEvent).where(
                    *self._where(course_id), OutboxEvent.id <= self.stable_id))
                if kept != self.stable_rows:  # a row committed long after its id was handed out
                    self._reset(erasures)
                self.verified = now
            rows = session.execute(select(
                OutboxEvent.id, OutboxEvent.created_at < now - self.SETTLE, OutboxEvent.user_id,
                OutboxEvent.envelope["payload"]["content_id"].as_string(),
                OutboxEvent.envelope["timestamp"].as_string()).where(
                *self._where(course_id), OutboxEvent.id > self.stable_id).order_by(OutboxEvent.id)).all()
            fresh = pd.DataFrame(rows, columns=["id", "settled", "user_id", "item_id", "timestamp"])
            settled = fresh["settled"].astype(bool).to_numpy()
            # stable: the leading run of settled rows (ids in order); the rest is read again next time
            cut = len(settled) if settled.all() else int(np.argmin(settled))
            # An open in the future (stored before the API refused such times), at a time pandas cannot hold (after
            # 2262) or unparsable is no usable open: skipped, never a crash of every recommendation of the course.
            at = pd.to_datetime(fresh["timestamp"], utc=True, format="ISO8601", errors="coerce")
            usable = (fresh["user_id"].notna() & fresh["item_id"].notna() & at.notna()
                      & (at <= pd.Timestamp(now + self.FUTURE_SLACK))).to_numpy()
            opens = pd.DataFrame({  # ids as categories: a 300,000-open course holds ~5 MB, not ~50
                "user_id": fresh["user_id"].astype("category"), "item_id": fresh["item_id"].astype("category"),
                "at": at})
            if cut:
                self.stable = _concat(self.stable, opens.iloc[:cut][usable[:cut]])
                self.stable_id = int(fresh["id"].iloc[cut - 1])
                self.stable_rows += cut
            return _concat(self.stable, opens.iloc[cut:][usable[cut:]])


def _concat(first: pd.DataFrame | None, second: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    from pandas.api.types import union_categoricals

    if first is None:
        return second.reset_index(drop=True)
    if not len(second):
        return first
    return pd.DataFrame({column: union_categoricals([first[column], second[column]], ignore_order=True)
                         for column in ("user_id", "item_id")}
                        | {"at": pd.concat([first["at"], second["at"]], ignore_index=True)})


_CACHE_SIZE = 64  # (database, course) pairs kept in memory, least recently used dropped
_caches: OrderedDict[tuple[str, str], _CourseOpens] = OrderedDict()
_caches_lock = threading.Lock()


def content_opens(session: Session, course_id: uuid.UUID, item_ids: Collection[str],
                  start: datetime) -> pd.DataFrame:
    """Every recorded open of the course's items ``item_ids`` (from ``POST /events`` and imports): columns
    ``user_id`` and ``item_id`` (categorical) and ``day``, the whole days since ``start`` (opens before it count on
    day 0).

    Read from the outbox through a per-process cache that only reads what was added since the last call: a course
    with 300,000 imported clicks costs a full read once, not on every recommendations request."""
    key = (session.get_bind().url.render_as_string(hide_password=True), str(course_id))
    with _caches_lock:
        cache = _caches.pop(key, None) or _CourseOpens()
        _caches[key] = cache
        while len(_caches) > _CACHE_SIZE:
            _caches.popitem(last=False)
    import numpy as np
    import pandas as pd

    opens = cache.refresh(session, str(course_id))
    opens = opens[opens["item_id"].isin(set(item_ids))]
    seconds = (opens["at"] - pd.Timestamp(start)).dt.total_seconds().to_numpy()
    # The ids stay categorical (comparing, counting and encoding them for the model service work on the codes),
    # with only the categories these opens use: the cache's include every content id ever posted.
    return pd.DataFrame({"user_id": opens["user_id"].cat.remove_unused_categories().array,
                         "item_id": opens["item_id"].cat.remove_unused_categories().array,
                         "day": np.maximum(0, np.floor(seconds / 86400)).astype("int64")})
