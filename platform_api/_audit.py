"""Append-only audit log of who changed what (written in the same transaction as the change)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from platform_api._models import AuditLog


def record(session: Session, *, actor_id: uuid.UUID | None, action: str, resource_type: str,
           resource_id: uuid.UUID | str | None, details: dict[str, Any] | None = None) -> None:
    session.add(AuditLog(actor_id=actor_id, action=action, resource_type=resource_type,
                         resource_id=str(resource_id) if resource_id is not None else None, details=details or {}))
