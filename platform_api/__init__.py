"""The LMS platform API: users, scoped roles, courses, enrollments, versioned content, questions,
assessments, submissions and grades, with a transactional outbox feeding ``lms.<domain>.events``.

Public surfaces: ``platform_api.api`` (functions for other packages: bulk import, AI grades, events),
``platform_api.data`` (enums and plain data classes), ``platform_api.main:app`` (the ASGI app),
``platform_api.policy`` (the authorization policy), ``platform_api.deps`` (FastAPI dependencies).
Everything starting with ``_`` is private.
"""

__all__ = ["api", "data", "deps", "main", "policy"]
