"""Content search restricted to the courses the caller may see (published + visibility + enrollment).

A public course's content is found by anyone who may read the catalog, so learners discover what to enroll in;
each hit says whether the caller may open it now (``access``: ``open``) or after enrolling (``enroll``).

The authorization decision is made here, in the query's ``allowed_course_ids``; the recommender never sees a
course id the caller may not read, so no hit of another course can come back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from learnloop.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from learnloop.settings import Settings
from platform_api import _courses, policy
from platform_api._models import Course, Enrollment
from platform_api.data import CourseStatus, CourseVisibility, ScopeType
from platform_api.policy import Permission, Principal, Scope

log = logging.getLogger("platform_api.search")

NOT_WIRED = ("Search is not wired in this API process (the recommender's search index is passed in by the process "
             "that starts the API: create_app(ml=MLBackends(search=recommender.api.search))); start the API with "
             "`learnloop serve api` / `learnloop demo`, or ask an operator")


def visible_course_ids(*, session: Session, actor: Principal | None) -> list[uuid.UUID]:
    """Every course whose content the caller may read: the same rule as ``GET /api/v1/courses/{id}``."""
    if actor is None or Permission.courses_read_unpublished in actor.global_permissions():
        return list(session.scalars(select(Course.id)))
    published = Course.status == CourseStatus.published
    ids: set[uuid.UUID] = set()
    if Permission.courses_read in actor.global_permissions():
        ids.update(session.scalars(select(Course.id).where(published, Course.visibility == CourseVisibility.public)))
    mine = or_(Course.instructor_id == actor.id, Course.created_by == actor.id)
    enrolled = Course.id.in_(select(Enrollment.course_id).where(
        Enrollment.user_id == actor.id, Enrollment.status.in_(sorted(policy.LEARNER_ENROLLMENT_STATUSES))))
    candidates = mine | (Course.status.in_(sorted(policy.LEARNER_COURSE_STATUSES)) & enrolled)
    scoped = [g for g in actor.grants if g.scope_type is not ScopeType.global_]
    # Institution-visible courses and scoped grants depend on course metadata: decide those per course.
    if scoped:  # a grant may open an unpublished course too (an assistant's draft)
        candidates = candidates | (Course.visibility != CourseVisibility.public) | ~published
    elif policy.institution_of(actor.user.metadata_) is not None:
        candidates = candidates | (Course.visibility != CourseVisibility.public)
    for course in session.scalars(select(Course).where(candidates)):
        if course.id not in ids and _courses._may_see(session, actor, course):
            ids.add(course.id)
    return sorted(ids, key=str)


@dataclass(frozen=True)
class SearchOutcome:
    """The hits, or (``unavailable`` set) the documented fallback: no hits and the reason, never a 5xx.

    ``readable``: the hits' course ids whose content the caller may open; a hit in another course the caller may
    see (a public course's catalog) is a discovery, opened after enrolling."""

    hits: list
    unavailable: str | None = None
    readable: frozenset[str] = frozenset()


def _readable(session: Session, actor: Principal | None, course_ids: set[str]) -> frozenset[str]:
    """The courses among ``course_ids`` whose content the caller may open (``GET /content/{id}``'s rule)."""
    if not course_ids:
        return frozenset()
    courses = session.scalars(select(Course).where(Course.id.in_([uuid.UUID(c) for c in course_ids])))
    return frozenset(str(c.id) for c in courses
                     if actor is None or policy.has_permission(session, actor, Permission.content_read,
                                                               Scope.of_course(c)))


def search_content(*, session: Session, actor: Principal | None, settings: Settings,
                   backend: Callable[..., list] | None, query: str, course_id: uuid.UUID | None,
                   limit: int) -> SearchOutcome:
    """Hybrid search over the caller's visible courses (or one of them), or the fallback when the index is down."""
    if course_id is not None:
        _courses.get_course(session=session, actor=actor, course_id=course_id)  # 404 when not visible
    allowed = [str(c) for c in visible_course_ids(session=session, actor=actor)]
    if backend is None:
        return SearchOutcome(hits=[], unavailable=NOT_WIRED)
    if not allowed:
        return SearchOutcome(hits=[])
    try:
        hits = backend(query, allowed_course_ids=allowed, limit=limit, settings=settings,
                       course_id=str(course_id) if course_id else None)
    except (InvalidInput, NotFound, PermissionDenied):
        raise  # the request is wrong, not the index: the caller must see why
    except Exception as exc:  # the index is another system (Qdrant, the embedder): it being down is the fallback
        log.exception("search backend failed")
        reason = exc.message if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {str(exc)[:200]}"
        return SearchOutcome(hits=[], unavailable=(
            f"The search index is unavailable ({reason}); retry in a minute, or ask an operator to rebuild it "
            "(`learnloop demo` indexes the catalog)"))
    return SearchOutcome(hits=hits, readable=_readable(session, actor, {h.course_id for h in hits}))
