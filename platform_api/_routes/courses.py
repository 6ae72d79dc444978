from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, status

from platform_api import _courses
from platform_api._schemas import (
    CourseCreate,
    CoursePublic,
    CoursesPublic,
    CourseUpdate,
    EnrollmentCreate,
    EnrollmentPublic,
    EnrollmentsPublic,
    ProgressUpdate,
)
from platform_api.data import CourseStatus, EnrollmentStatus
from platform_api.deps import CurrentUser, Pagination, SessionDep, require
from platform_api.policy import Permission, Principal

router = APIRouter(tags=["courses"])


@router.post("/courses", response_model=CoursePublic, status_code=status.HTTP_201_CREATED)
def create_course(body: CourseCreate, session: SessionDep,
                  actor: Annotated[Principal, require(Permission.courses_create)]) -> Any:
    """New courses start as `draft`; publish with `PUT /courses/{id}` and `{"status": "published"}`."""
    return _courses.create_course(session=session, actor=actor, data=body)


@router.get("/courses", response_model=CoursesPublic)
def list_courses(session: SessionDep, actor: CurrentUser, page: Pagination, status: CourseStatus | None = None,
                 instructor_id: uuid.UUID | None = None) -> Any:
    rows, count = _courses.list_courses(session=session, actor=actor, status=status, instructor_id=instructor_id,
                                        limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count, "limit": page.limit, "offset": page.offset}


@router.get("/courses/{course_id}", response_model=CoursePublic)
def get_course(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _courses.get_course(session=session, actor=actor, course_id=course_id)


@router.put("/courses/{course_id}", response_model=CoursePublic)
def update_course(course_id: uuid.UUID, body: CourseUpdate, session: SessionDep, actor: CurrentUser) -> Any:
    return _courses.update_course(session=session, actor=actor, course_id=course_id, data=body)


@router.post("/courses/{course_id}/enrollments", response_model=EnrollmentPublic,
             summary="Enroll in a course (yourself, or a learner as course staff)",
             status_code=status.HTTP_201_CREATED)
def enroll(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser,
           body: Annotated[EnrollmentCreate | None, Body()] = None) -> Any:
    """Enroll yourself (empty body) or, as course staff, another user (`user_id`)."""
    return _courses.enroll(session=session, actor=actor, course_id=course_id,
                           user_id=body.user_id if body else None)


@router.get("/courses/{course_id}/enrollments", response_model=EnrollmentsPublic)
def course_enrollments(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination,
                       status: EnrollmentStatus | None = None) -> Any:
    """The roster (course staff only)."""
    rows, count = _courses.list_course_enrollments(session=session, actor=actor, course_id=course_id,
                                                   status=status, limit=page.limit, offset=page.offset)
    return {"data": rows, "count": count, "limit": page.limit, "offset": page.offset}


@router.put("/enrollments/{enrollment_id}/progress", response_model=EnrollmentPublic, tags=["enrollments"])
def update_progress(enrollment_id: uuid.UUID, body: ProgressUpdate, session: SessionDep, actor: CurrentUser) -> Any:
    return _courses.update_progress(session=session, actor=actor, enrollment_id=enrollment_id, data=body)
