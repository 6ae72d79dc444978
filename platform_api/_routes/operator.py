"""The operator page of ``pipelines.monitoring`` mounted under ``/operator``, for operators and admins only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from learnloop.settings import Settings
from pipelines.monitoring.api import operator_router
from platform_api.deps import require
from platform_api.policy import Permission

PREFIX = "/operator"


def build_router(settings: Settings, services: Callable[[], list[dict[str, Any]]] | None = None) -> APIRouter:
    """Every route of the page (HTML, JSON status, saved reports, metrics) needs ``operator:read``.

    The page links to ``/operator/...`` itself, so it is mounted at the root with that prefix, not under
    ``/api/v1``. Without a live registry callback the page shows the snapshot of the last ``learnloop drift
    check`` (the platform API imports no registry). ``services`` gives the page's service health rows.
    """
    router = APIRouter(dependencies=[require(Permission.operator_read)])
    router.include_router(operator_router(settings=settings, prefix=PREFIX, services=services))
    return router
