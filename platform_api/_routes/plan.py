"""The course plan: the JSON API under /api/v1 and the staff page under /staff (server-rendered)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from learnloop.errors import LearnloopError
from learnloop.settings import Settings
from platform_api import _plan, _web
from platform_api._schemas import CoursePlanChangePublic, CoursePlanPublic, CoursePlanUpdate
from platform_api.deps import CurrentUser, SessionDep, SettingsDep
from platform_api.policy import Principal

router = APIRouter(tags=["courses"])


def _item(entry: _plan.PlanItem) -> dict:
    item = entry.item
    return {"id": item.id, "title": item.title, "kind": item.kind, "position": item.position,
            "planned_week": item.planned_week, "opened_by": entry.opened_by, "behind": entry.behind}


def _public(plan: _plan.CoursePlan) -> CoursePlanPublic:
    return CoursePlanPublic.model_validate({
        "course_id": plan.course.id, "starts_at": plan.starts_at, "duration_weeks": plan.course.duration_weeks,
        "current_week": plan.current_week, "learners": plan.learners, "can_edit": plan.can_edit,
        "weeks": [{"week": w.week, "starts_at": w.starts_at, "items": [_item(e) for e in w.items],
                   "assessments": w.assessments} for w in plan.weeks],
        "unplanned": [_item(e) for e in plan.unplanned], "unscheduled_assessments": plan.unscheduled})


@router.get("/courses/{course_id}/plan", response_model=CoursePlanPublic,
            summary="The course plan: content and assessments by week, with how many learners opened each item")
def get_plan(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    """For the course's staff (with `opened_by`, `learners`, `behind`) and its content editors (without them).
    Set one item's week with `PUT /content/{id}` or several at once with `PUT /courses/{id}/plan`."""
    return _public(_plan.course_plan(session=session, actor=actor, course_id=course_id))


@router.put("/courses/{course_id}/plan", response_model=CoursePlanChangePublic,
            summary="Plan several content items at once (one transaction; null takes an item out of the plan)")
def put_plan(course_id: uuid.UUID, body: CoursePlanUpdate, session: SessionDep, settings: SettingsDep,
             actor: CurrentUser) -> Any:
    """Each changed item gets a new content version and a `content.updated` event (the recommender reads the plan
    from them); items already in the given week are left alone. An item of another course or a week after the
    course's `duration_weeks` refuses the whole change."""
    changed = _plan.set_planned_weeks(session=session, settings=settings, actor=actor, course_id=course_id,
                                      weeks={c.content_id: c.planned_week for c in body.items})
    return {"changed": changed, "plan": _public(_plan.course_plan(session=session, actor=actor,
                                                                  course_id=course_id))}


# --------------------------------------------------------------------------- the staff page
pages = APIRouter(prefix=_web.PREFIX, include_in_schema=False)
FORM_FIELDS = 50_000  # two per item (its week and the week shown): courses of up to 25,000 items


@pages.get("/courses/{course_id}/plan", response_class=HTMLResponse)
def plan_page(course_id: uuid.UUID, request: Request, session: SessionDep, saved: str | None = None) -> Any:
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request)
    try:
        plan = _plan.course_plan(session=session, actor=actor, course_id=course_id)
    except LearnloopError as exc:
        return _web.error_page(request, exc, actor.user)
    return _web.render(request, "plan.html", {
        "actor": actor.user, "plan": plan, "course": plan.course, "behind_share": _plan.BEHIND_SHARE,
        "saved": int(saved) if saved and saved.isdigit() and len(saved) < 7 else None,
        "last_week": plan.course.duration_weeks or _plan.MAX_WEEKS})


def _week(raw: str) -> int | None:
    if not raw:
        return None
    try:
        week = int(raw)
    except ValueError:
        raise _web.InvalidForm(f"“{raw[:40]}” is not a week number; give a whole number from 1 or leave the field "
                               "empty to take the item out of the plan") from None
    if week < 1:
        raise _web.InvalidForm(f"Week {week} is before the course's first week (1)")
    return week


def _form_weeks(form: dict[str, str]) -> tuple[dict[uuid.UUID, int | None], dict[uuid.UUID, int | None]]:
    """(new weeks, the weeks the page showed) of the items whose field was changed: untouched fields are not sent
    on, and a changed item that someone else moved since the page was loaded is refused, not overwritten."""
    changes: dict[uuid.UUID, int | None] = {}
    shown: dict[uuid.UUID, int | None] = {}
    for name, value in form.items():
        if not name.startswith("week-"):
            continue
        raw, was = value.strip(), form.get("was-" + name.removeprefix("week-"), "").strip()
        if raw == was:
            continue
        try:
            content_id = uuid.UUID(name.removeprefix("week-"))
        except ValueError:
            raise _web.InvalidForm(f"Unknown field {name[:60]!r}; reload the plan page") from None
        changes[content_id] = _week(raw)
        shown[content_id] = _week(was)
    return changes, shown


def _save(session: Session, settings: Settings, actor: Principal, course_id: uuid.UUID,
          form: dict[str, str]) -> int:
    weeks, shown = _form_weeks(form)
    if not weeks:
        return 0
    return _plan.set_planned_weeks(session=session, settings=settings, actor=actor, course_id=course_id,
                                   weeks=weeks, expected=shown)


@pages.post("/courses/{course_id}/plan")
async def save_plan(course_id: uuid.UUID, request: Request, session: SessionDep, settings: SettingsDep) -> Any:
    form = await request.form(max_fields=FORM_FIELDS)
    actor = await run_in_threadpool(_web.page_principal, request, session)
    if actor is None:
        return _web.to_login(request, [(name, value) for name, value in form.multi_items() if isinstance(value, str)])
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    try:
        _web.check_same_origin(request)
        changed = await run_in_threadpool(_save, session, settings, actor, course_id, fields)
    except LearnloopError as exc:
        return _web.error_page(request, exc, actor.user)
    # Post/redirect/get: a reload does not post twice; the page says how many items moved.
    return RedirectResponse(f"{_web.PREFIX}/courses/{course_id}/plan?saved={changed}#status-message",
                            status_code=303)
