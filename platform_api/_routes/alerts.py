"""At-risk alerts: the JSON API under /api/v1 and the instructor page under /staff (server-rendered)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from learnloop.errors import LearnloopError
from platform_api import _alerts, _courses, _web
from platform_api._schemas import AlertOutcomeCreate, AlertPublic, AlertReportPublic, AlertsPublic
from platform_api.data import AlertAction, AlertOutcome, AlertStatus
from platform_api.deps import CurrentUser, Pagination, SessionDep

router = APIRouter(tags=["alerts"])


def _public(view: _alerts.AlertView) -> AlertPublic:
    alert = view.alert
    return AlertPublic(id=alert.id, course_id=alert.course_id, user_id=alert.user_id,
                       enrollment_id=alert.enrollment_id, learner_name=view.learner_name,
                       risk_score=alert.risk_score, threshold=alert.threshold, model_name=alert.model_name,
                       model_version=alert.model_version, drivers=alert.drivers or [], actions=alert.actions or [],
                       status=alert.status.value, created_at=alert.created_at, resolved_at=alert.resolved_at)


@router.get("/courses/{course_id}/alerts", response_model=AlertsPublic,
            summary="The course's at-risk alerts, highest risk first (course staff only)")
def course_alerts(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser, page: Pagination,
                  status: AlertStatus | None = None) -> Any:
    """Raised by `learnloop interventions run`. Learners never see alerts (not even their own): 403."""
    views, count = _alerts.list_course_alerts(session=session, actor=actor, course_id=course_id, status=status,
                                              limit=page.limit, offset=page.offset)
    return {"data": [_public(v) for v in views], "count": count, "limit": page.limit, "offset": page.offset}


@router.get("/courses/{course_id}/alerts/report", response_model=AlertReportPublic,
            summary="Alert outcomes of a course: counts by status and action, share useful")
def course_alert_report(course_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _alerts.report(session=session, actor=actor, course_id=course_id)


@router.get("/alerts/report", response_model=AlertReportPublic,
            summary="Alert outcomes across every course (operators and admins)")
def alert_report(session: SessionDep, actor: CurrentUser) -> Any:
    return _alerts.report(session=session, actor=actor, course_id=None)


@router.get("/alerts/{alert_id}", response_model=AlertPublic, summary="One alert (course staff only)")
def get_alert(alert_id: uuid.UUID, session: SessionDep, actor: CurrentUser) -> Any:
    return _public(_alerts.get_alert(session=session, actor=actor, alert_id=alert_id))


@router.post("/alerts/{alert_id}/outcome", response_model=AlertPublic,
             summary="Record what you did with an alert: action_taken (+ action), dismissed or not_useful")
def record_outcome(alert_id: uuid.UUID, body: AlertOutcomeCreate, session: SessionDep, actor: CurrentUser) -> Any:
    """Stored with its history, audited and emitted as `enrollment.alert_outcome`; resolved alerts become
    labels for the next training run (`platform_api.api.alert_outcome_labels`)."""
    view = _alerts.record_outcome(session=session, actor=actor, alert_id=alert_id,
                                  outcome=AlertOutcome(body.outcome),
                                  action=AlertAction(body.action) if body.action else None, note=body.note)
    return _public(view)


# --------------------------------------------------------------------------- the instructor page
pages = APIRouter(prefix=_web.PREFIX, include_in_schema=False)

STATUS_LABELS = {"open": "Open", "action_taken": "Action taken", "dismissed": "Dismissed",
                 "not_useful": "Not useful", "superseded": "Superseded by a newer alert"}
ALL = "all"  # the page's filter value for every status
ACTION_LABELS = {"message_learner": "Messaged the learner", "recommend_content": "Recommended content",
                 "extend_deadline": "Extended a deadline", "other": "Other action"}


# The staff home (/staff/courses: grading queues and alerts of your courses) is platform_api._web.staff_home.


PAGE_ROWS = 200  # alerts per page; the page links to the next ones


@pages.get("/courses/{course_id}/alerts", response_class=HTMLResponse)
def alerts_page(course_id: uuid.UUID, request: Request, session: SessionDep,
                status: Annotated[str, Query(max_length=32)] = AlertStatus.open.value, done: str | None = None,
                offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> Any:
    """``status``: one alert status, or ``all`` (an unknown value is an error page saying which exist); ``offset``:
    the first alert shown (``PAGE_ROWS`` per page)."""
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request)
    try:
        if status not in (*AlertStatus.__members__, ALL):
            # The values the address takes (the labels, "Open" or "Action taken", are not accepted there).
            raise _web.InvalidForm(f"Unknown alert status {status[:32]!r}: use status= one of "
                                   f"{', '.join(STATUS_LABELS)} or {ALL}")
        chosen = None if status == ALL else AlertStatus(status)
        views, count = _alerts.list_course_alerts(session=session, actor=actor, course_id=course_id, status=chosen,
                                                  limit=PAGE_ROWS, offset=offset)
        summary = _alerts.report(session=session, actor=actor, course_id=course_id)
        course = _courses.get_course(session=session, actor=actor, course_id=course_id)
    except LearnloopError as exc:
        return _web.error_page(request, exc, actor.user)
    return _web.render(request, "alerts.html", {
        "actor": actor.user, "course": course, "alerts": views, "count": count, "report": summary,
        "status": status, "all": ALL, "statuses": STATUS_LABELS, "action_labels": ACTION_LABELS,
        "offset": offset, "page_rows": PAGE_ROWS,
        "done": done if done in STATUS_LABELS else None})


@pages.post("/alerts/{alert_id}/outcome")
def act_on_alert(alert_id: uuid.UUID, request: Request, session: SessionDep, form: _web.PostedForm,
                 outcome: Annotated[str, Form(max_length=32)],
                 action: Annotated[str, Form(max_length=32)] = "",
                 note: Annotated[str, Form(max_length=2000)] = "") -> Any:
    actor = _web.page_principal(request, session)
    if actor is None:
        return _web.to_login(request, form)
    try:
        _web.check_same_origin(request)
        if outcome not in AlertOutcome.__members__:
            raise _web.InvalidForm(f"Choose an outcome ({', '.join(STATUS_LABELS[o] for o in AlertOutcome)})")
        chosen = AlertOutcome(outcome)
        if action and action not in AlertAction.__members__:
            raise _web.InvalidForm("Choose one of the listed actions")
        view = _alerts.record_outcome(session=session, actor=actor, alert_id=alert_id, outcome=chosen,
                                      action=AlertAction(action) if action and chosen is AlertOutcome.action_taken
                                      else None, note=_web.form_text(note), open_only=True)
    except LearnloopError as exc:
        return _web.error_page(request, exc, actor.user)
    # Post/redirect/get: a reload does not record the outcome twice; the page announces what was stored.
    return RedirectResponse(f"{_web.PREFIX}/courses/{view.alert.course_id}/alerts?done={chosen.value}"
                            f"#status-message", status_code=303)
