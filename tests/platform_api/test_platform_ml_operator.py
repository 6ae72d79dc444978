"""The monitoring operator page mounted at /operator: operators and admins only, and its links resolve."""

from __future__ import annotations

import json
import re
import uuid

import pytest


@pytest.fixture(scope="module")
def drift_snapshot(platform):
    """What the last `learnloop drift check` leaves on disk (state.json + the saved Evidently reports)."""
    settings = platform.settings
    reports = settings.reports_dir / "drift" / "risk"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "drift-1.html").write_text("<html><body>evidently report</body></html>")
    (reports / "drift-1.json").write_text('{"metrics": []}')
    state = {"models": {"risk": {
        "drift_detected": True, "drifted_features": ["clicks_total"], "share": 0.6, "prediction_drift": False,
        "checked_at": "2026-11-25T19:00:00+00:00", "n_reference": 100, "n_current": 80, "performance": None,
        "report_html": str(reports / "drift-1.html"), "report_json": str(reports / "drift-1.json")}},
        "counters": {}, "registry": {"at": "2026-11-25T19:00:00+00:00",
                                     "models": [{"name": "risk", "aliases": {"champion": "3"}, "versions": ["3"]}]}}
    monitoring = settings.data_path / "monitoring"
    monitoring.mkdir(parents=True, exist_ok=True)
    (monitoring / "state.json").write_text(json.dumps(state))
    return state


def test_only_operators_and_admins_see_the_page(platform, drift_snapshot):
    client = platform.client
    assert client.get("/operator").status_code == 401
    _, student = platform.user()
    _, instructor = platform.user("instructor")
    for headers in (student, instructor):
        for path in ("/operator", "/operator/status", "/operator/metrics", "/operator/reports/risk/drift-1.html"):
            assert client.get(path, headers=headers).status_code == 403, path
    operator_id, operator = platform.user()
    granted = client.post(f"/api/v1/users/{operator_id}/roles", headers=platform.admin_headers,
                          json={"role_name": "operator", "scope_type": "global"})
    assert granted.status_code == 201, granted.text
    for headers in (operator, platform.admin_headers):
        page = client.get("/operator", headers=headers)
        assert page.status_code == 200 and "learnloop operator page" in page.text
    status = client.get("/operator/status", headers=operator).json()
    risk = next(m for m in status["models"] if m["name"] == "risk")
    assert risk["aliases"] == {"champion": "3"} and risk["drift"]["drifted_features"] == ["clicks_total"]


def test_every_link_of_the_page_resolves(platform, drift_snapshot):
    page = platform.client.get("/operator", headers=platform.admin_headers)
    links = set(re.findall(r'href="([^"]+)"', page.text))
    assert {"/operator/metrics", "/operator/status", "/operator/reports/risk/drift-1.html",
            "/operator/reports/risk/drift-1.json"} <= links
    for link in links:
        response = platform.client.get(link, headers=platform.admin_headers)
        assert response.status_code == 200, (link, response.text[:200])
    report = platform.client.get("/operator/reports/risk/drift-1.html", headers=platform.admin_headers)
    assert "evidently report" in report.text
    missing = platform.client.get("/operator/reports/risk/..%2Fstate.json", headers=platform.admin_headers)
    assert missing.status_code == 404


def _signed_in_user(platform, role: str = "student") -> tuple[str, str]:
    from platform_fixtures import PASSWORD

    email = f"{role}-{uuid.uuid4().hex[:10]}@example.org"
    created = platform.client.post("/api/v1/users", headers=platform.admin_headers,
                                   json={"email": email, "name": "Olive Operator", "password": PASSWORD, "role": role})
    assert created.status_code == 201, created.text
    return created.json()["id"], email


def _sign_in(platform, email: str, next_page: str = "") -> str:
    from platform_fixtures import PASSWORD

    response = platform.client.post("/staff/login", data={"email": email, "password": PASSWORD, "next": next_page},
                                    follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["location"]


def test_an_operator_opens_the_page_in_a_browser_with_the_staff_sign_in(platform, drift_snapshot):
    """The page is for people: a browser (the sign-in cookie, no bearer header) gets it, is sent to sign in and
    back when not signed in, and the staff home links to it for operators only."""
    client = platform.client
    client.cookies.clear()
    try:
        to_login = client.get("/operator", headers={"Accept": "text/html"}, follow_redirects=False)
        assert to_login.status_code == 303 and to_login.headers["location"] == "/staff/login?next=%2Foperator"
        assert client.get("/operator/status").status_code == 401  # a script without a token: JSON 401

        operator_id, email = _signed_in_user(platform)
        assert client.post(f"/api/v1/users/{operator_id}/roles", headers=platform.admin_headers,
                           json={"role_name": "operator", "scope_type": "global"}).status_code == 201
        assert _sign_in(platform, email, "/operator") == "/operator"  # back to the page after signing in
        page = client.get("/operator")
        assert page.status_code == 200 and "learnloop operator page" in page.text
        assert client.get("/operator/status").json()["models"]
        assert 'href="/operator"' in client.get("/staff/courses").text

        client.cookies.clear()
        _, learner = _signed_in_user(platform)
        _sign_in(platform, learner)
        refused = client.get("/operator", headers={"Accept": "text/html"})
        # The error page in the staff layout, not a JSON body in the browser.
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert "<h1>Not allowed</h1>" in refused.text and "operator:read" in refused.text
        assert client.get("/operator/status").json()["error"]["code"] == "permission_denied"  # scripts: JSON
        client.cookies.clear()
        _, instructor = _signed_in_user(platform, "instructor")
        _sign_in(platform, instructor)
        assert 'href="/operator"' not in client.get("/staff/courses").text
    finally:
        client.cookies.clear()


def test_the_metrics_openapi_says_what_the_route_serves(platform, drift_snapshot):
    """The OpenAPI said application/json for the Prometheus text the route serves."""
    served = platform.client.get("/operator/metrics", headers=platform.admin_headers)
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain")
    documented = platform.client.get("/openapi.json").json()["paths"]["/operator/metrics"]["get"]["responses"]["200"]
    assert list(documented["content"]) == ["text/plain"]


def test_the_page_shows_what_the_model_service_serves_of_every_model(platform, drift_snapshot, monkeypatch):
    """The model service's /admin/models listed only the risk champion; the page showed nothing of it. Now each model
    row says what the service serves (status, version, alias or origin, inputs), the ranker and graders included,
    and a service that does not answer is a line on the page, not an error page."""
    import serving.api
    from learnloop.errors import Unavailable
    from serving.api import ServedModel, ServedModelStatus

    served = [
        ServedModel(name="risk", route="/predict_risk", status=ServedModelStatus.loaded, version="3", alias="champion",
                    source="models:/risk@champion", n_inputs=88),
        ServedModel(name="recommender", route="/recommend", status=ServedModelStatus.unavailable, alias="champion",
                    detail="no 'recommender' champion registered (train with `learnloop train recommender`)"),
        ServedModel(name="essay_grader_p2", route="/grade_essay", status=ServedModelStatus.not_loaded,
                    version="essay-p2-full-20261125T190000", source="var/grading/prompt-2",
                    trained_on="/data/asap_aes/essays.tsv", trained_at="2026-11-25T19:00:00+00:00", n_inputs=57),
    ]
    monkeypatch.setattr(serving.api, "served_models", lambda **_: served)
    status = platform.client.get("/operator/status", headers=platform.admin_headers).json()
    rows = {row["name"]: row for row in status["models"]}
    assert rows["risk"]["aliases"] == {"champion": "3"} and rows["risk"]["served"]["version"] == "3"
    assert rows["recommender"]["served"]["status"] == "unavailable"
    assert rows["essay_grader_p2"]["served"]["trained_on"] == "/data/asap_aes/essays.tsv"
    assert status["served_error"] is None
    page = platform.client.get("/operator", headers=platform.admin_headers).text
    assert 'data-served="loaded"' in page and "88 inputs" in page and 'data-served="unavailable"' in page
    assert "trained 2026-11-25T19:00:00+00:00 on <code>/data/asap_aes/essays.tsv</code>" in page
    assert "v3 <span" in page and "essay-p2-full-20261125T190000" in page and "vessay" not in page

    def down(**_):
        raise Unavailable("the model service at http://127.0.0.1:3000 does not answer /admin/models")

    monkeypatch.setattr(serving.api, "served_models", down)
    page = platform.client.get("/operator", headers=platform.admin_headers)
    assert page.status_code == 200 and "Model service: the model service at" in page.text
    assert platform.client.get("/operator/status", headers=platform.admin_headers).json()["served_error"]
