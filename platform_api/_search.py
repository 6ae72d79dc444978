"""Content search restricted to the courses the caller may see (published + visibility + enrollment).

A public course's content is found by anyone who may read the catalog, so learners discover what to enroll in;
each hit says whether the caller may open it now (``access``: ``open``) or after enrolling (``enroll``).

The authorization decision is made here, in the query's ``allowed_course_ids``; the recommender never sees a
course id the caller may not read, so no hit of another course can come back.

When the search index cannot answer (Qdrant down or held by another process, the embedder unreadable, no index in
this process), search degrades to a plain word match over the same courses' content in the platform database
(``mode`` "lexical", ``unavailable`` says why): what the platform itself holds is still found by its words, not by
meaning, and the catalog indexed from data sets (not platform content) is not.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from learnloop.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from learnloop.settings import Settings
from platform_api import _courses, policy
from platform_api._models import ContentItem, Course, Enrollment
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
    """The hits, or (``unavailable`` set) the documented fallback: the word matches of the platform's own content
    (``mode`` "lexical") and the reason, never a 5xx.

    ``readable``: the hits' course ids whose content the caller may open; a hit in another course the caller may
    see (a public course's catalog) is a discovery, opened after enrolling."""

    hits: list
    unavailable: str | None = None
    readable: frozenset[str] = frozenset()
    mode: str = "hybrid"


@dataclass(frozen=True)
class LexicalHit:
    """A hit of the word-match fallback, shaped like the index's hits (no dense side: ``similarity`` None)."""

    item_id: str
    course_id: str
    title: str
    score: float
    bm25_score: float
    dense_score: float = 0.0
    url: str | None = None
    similarity: float | None = None
    lexical_match: bool = True


# Content rows read for one fallback query: those containing most of the query's words first, then the newest.
LEXICAL_CANDIDATES = 500
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _contains(term: str):
    """Title or body contains ``term`` (lower case) in any case. SQL lower() folds only ASCII letters on SQLite (and
    in PostgreSQL under a C locale), so a word with a non-ASCII capital ("Ökologie", "ФИЗИКА") is also looked for
    as written capitalised and in capitals; the whole-word check after the query is exact."""
    variants = sorted({term.capitalize(), term.upper()} - {term}) if not term.isascii() else []
    return or_(*(condition for column in (ContentItem.title, ContentItem.body) for condition in (
        func.lower(column).contains(term, autoescape=True),
        *(column.contains(variant, autoescape=True) for variant in variants))))


def lexical_search(*, session: Session, course_ids: list[str], query: str, limit: int) -> list[LexicalHit]:
    """Content of ``course_ids`` that shares words with ``query``, best first: more of the query's words, then the
    words in the title, then how often they occur. Scores are relative to this query's best hit (1.0)."""
    terms = list(dict.fromkeys(word for word in _words(query) if len(word) > 1))[:12]
    if not terms or not course_ids:
        return []
    contains = [_contains(term) for term in terms]
    # Candidates containing more of the query's words first: a common word of the query ("in", "the") is in most
    # rows, and the newest of those alone would crowd out an older item holding every word of the query.
    words_contained = sum((case((condition, 1), else_=0) for condition in contains[1:]),
                          case((contains[0], 1), else_=0))
    rows = session.execute(
        select(ContentItem.id, ContentItem.course_id, ContentItem.title, ContentItem.body)
        .where(ContentItem.course_id.in_([uuid.UUID(c) for c in course_ids]), or_(*contains))
        .order_by(words_contained.desc(), ContentItem.updated_at.desc()).limit(LEXICAL_CANDIDATES)).all()
    scored = []
    for row in rows:
        title, body = Counter(_words(row.title)), Counter(_words(row.body or ""))
        matched = [t for t in terms if title[t] or body[t]]  # whole words: the LIKE prefilter also hit parts
        if not matched:
            continue
        in_title = sum(1 for t in terms if title[t])
        frequency = sum(title[t] + body[t] for t in matched)
        scored.append((len(matched) + 0.5 * in_title + 0.01 * min(frequency, 50), row))
    scored.sort(key=lambda pair: -pair[0])
    best = scored[0][0] if scored else 1.0
    return [LexicalHit(item_id=str(row.id), course_id=str(row.course_id), title=row.title, score=value / best,
                       bm25_score=value / best) for value, row in scored[:limit]]


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
        return _lexical_fallback(session, actor, allowed, query, course_id, limit, f"{NOT_WIRED}. {LEXICAL_NOTE}")
    if not allowed:
        return SearchOutcome(hits=[])
    try:
        hits = backend(query, allowed_course_ids=allowed, limit=limit, settings=settings,
                       course_id=str(course_id) if course_id else None)
    except (InvalidInput, NotFound, PermissionDenied):
        raise  # the request is wrong, not the index: the caller must see why
    except Exception as exc:  # the index is another system (Qdrant, the embedder): it being down is the fallback
        if isinstance(exc, Unavailable):  # expected while it is down: one line, not a traceback per query
            log.warning("search index unavailable: %s", exc.message)
        else:
            log.exception("search backend failed")
        reason = exc.message if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {str(exc)[:200]}"
        return _lexical_fallback(session, actor, allowed, query, course_id, limit, (
            f"The search index is unavailable ({reason}). {LEXICAL_NOTE}; retry in a minute, or ask an operator "
            "to rebuild it (`learnloop demo` indexes the catalog)"))
    return SearchOutcome(hits=hits, readable=_readable(session, actor, {h.course_id for h in hits}))


LEXICAL_NOTE = ("Meanwhile the results are a plain word match over the courses' content (no search by meaning; "
                "the catalog indexed from data sets is left out)")


def _lexical_fallback(session: Session, actor: Principal | None, allowed: list[str], query: str,
                      course_id: uuid.UUID | None, limit: int, note: str) -> SearchOutcome:
    courses = [str(course_id)] if course_id is not None else allowed
    hits = lexical_search(session=session, course_ids=courses, query=query, limit=limit)
    return SearchOutcome(hits=hits, unavailable=note, mode="lexical",
                         readable=_readable(session, actor, {h.course_id for h in hits}))
