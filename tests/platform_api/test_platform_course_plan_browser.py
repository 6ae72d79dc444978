"""The course plan page in headless Chromium: an instructor signs in, reads the weeks, moves an item with the
keyboard and saves; the change is stored. Screenshots go to the pytest tmp dir (or LEARNLOOP_SCREENSHOT_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_support import BROWSER, launch_chromium, served
from platform_fixtures import PASSWORD, fresh_database_url, start_platform

pytestmark = BROWSER


@pytest.fixture
def served_plan(tmp_path):
    """A platform on SQLite served by uvicorn, with a course of two weeks' content and an unplanned item."""
    from platform_api.main import create_app

    database = fresh_database_url("sqlite", tmp_path)
    platform = start_platform(next(database), tmp_path / "data")
    p = next(platform)
    instructor_id, instructor = p.user("instructor", name="Ada Instructor")
    course_id = p.course(instructor, title="Statistics 101", duration_weeks=4)
    ids = {}
    for title, week in (("Distributions", 1), ("Sampling video", 2), ("Glossary", None)):
        ids[title] = p.client.post("/api/v1/content", headers=instructor, json={
            "course_id": course_id, "title": title, "planned_week": week, "position": len(ids)}).json()["id"]
    email = p.client.get(f"/api/v1/users/{instructor_id}", headers=p.admin_headers).json()["email"]

    with served(create_app(p.settings, migrate=False)) as url:
        yield {"url": url, "course": course_id, "items": ids, "email": email, "platform": p,
               "instructor": instructor}
    platform.close()


def test_instructor_plans_an_item_from_the_page(served_plan, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("LEARNLOOP_SCREENSHOT_DIR", tmp_path))
    base, course = served_plan["url"], served_plan["course"]
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{base}/staff/login")
        page.get_by_label("Email").fill(served_plan["email"])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/staff/courses")
        page.get_by_role("link", name="Course plan of Statistics 101").click()
        page.wait_for_url(f"**/staff/courses/{course}/plan")

        assert page.get_by_role("heading", name="Course plan: Statistics 101").is_visible()
        assert page.locator("#week-1 table").inner_text().count("Distributions") == 1
        assert "Nothing planned for this week" in page.locator("#week-3").inner_text()
        unlabeled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).length""")
        assert unlabeled == 0
        page.screenshot(path=str(shots / "course-plan.png"), full_page=True)

        field = page.get_by_label("Planned week of Glossary")
        field.focus()
        page.keyboard.type("3")
        page.keyboard.press("Enter")  # submits the plan form
        page.wait_for_url("**saved=1**")
        assert "Saved: 1 item moved" in page.locator("#status-message").inner_text()
        assert "Glossary" in page.locator("#week-3").inner_text()
        page.screenshot(path=str(shots / "course-plan-after.png"), full_page=True)
        browser.close()

    p = served_plan["platform"]
    plan = p.client.get(f"/api/v1/courses/{course}/plan", headers=served_plan["instructor"]).json()
    assert [i["title"] for i in plan["weeks"][2]["items"]] == ["Glossary"] and plan["unplanned"] == []
