"""The instructor alerts page in headless Chromium: sign in, see the alert with its reasons, act on it; the
outcome is stored. Screenshots go to the pytest tmp dir (or LEARNLOOP_SCREENSHOT_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_support import BROWSER, launch_chromium, served
from interventions_fixtures import PASSWORD

pytestmark = BROWSER


@pytest.fixture
def served_platform(interventions_world):
    from platform_api.main import create_app

    with served(create_app(interventions_world.settings, migrate=False)) as url:
        yield url


def test_instructor_signs_in_and_acts_on_an_alert(served_platform, interventions_world, tmp_path):
    from playwright.sync_api import sync_playwright
    from sqlalchemy import select

    from platform_api._models import Alert, AlertOutcomeRecord
    from platform_api.api import open_session

    world = interventions_world
    shots = Path(os.environ.get("LEARNLOOP_SCREENSHOT_DIR", tmp_path))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{served_platform}/staff/courses/{world.course_b}/alerts")
        assert "/staff/login" in page.url  # not signed in: the page sends us to sign in, then back
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
        page.get_by_label("Email").fill(world.instructor_b)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**/staff/courses/{world.course_b}/alerts**")

        row = page.locator("#alerts tbody tr").first
        assert "Learner 3001" in row.inner_text()
        assert "3 of 3 assessments missed" in row.inner_text()
        assert "Message the learner" in row.inner_text()
        # Every visible form control has a label (WCAG 1.3.1 / 4.1.2).
        unlabeled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).length""")
        assert unlabeled == 0
        page.screenshot(path=str(shots / "alerts-page.png"), full_page=True)

        row.get_by_label("Action").select_option("message_learner")
        row.get_by_label("Note (optional)").fill("Called them; new study plan")
        row.get_by_role("button", name="Record action").click()
        page.wait_for_url("**done=action_taken**")
        assert "Saved: alert marked “Action taken”" in page.locator("#status-message").inner_text()
        assert page.locator("#alerts").count() == 0  # the open list is empty now
        page.screenshot(path=str(shots / "alerts-page-after.png"), full_page=True)
        page.get_by_role("link", name="All", exact=True).click()  # every status: the one just acted on is there
        page.wait_for_url("**status=all**")
        assert "Action taken" in page.locator("#alerts tbody tr").first.inner_text()
        page.goto(f"{served_platform}/staff/courses/{world.course_b}/alerts?status=bogus")
        assert "Unknown alert status" in page.locator("main").inner_text()  # a page, not a JSON 422
        page.goto(f"{served_platform}/staff/courses/{world.course_b}/alerts")

        # The same sign-in opens the course's grading queue (/grading) and the staff home with the counts.
        page.get_by_role("link", name="Grading queue of this course").click()
        page.wait_for_url(f"**/grading/courses/{world.course_b}")
        assert "Nothing to grade" in page.locator("main").inner_text()
        page.get_by_role("link", name="Your courses").first.click()
        page.wait_for_url("**/staff/courses")
        cells = page.locator(f"#courses tr[data-course='{world.course_b}'] td")
        assert cells.nth(1).inner_text().startswith("0")  # no open alert left
        page.screenshot(path=str(shots / "staff-home.png"), full_page=True)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/staff/login")
        page.goto(f"{served_platform}/grading/courses/{world.course_b}")
        assert "/staff/login" in page.url  # signed out everywhere
        browser.close()
    assert (shots / "alerts-page.png").stat().st_size > 10_000

    with open_session(world.settings, migrate_first=False) as session:
        (alert,) = session.scalars(select(Alert).where(Alert.course_id == world.course_b)).all()
        assert alert.status.value == "action_taken"
        record = session.scalar(select(AlertOutcomeRecord).where(AlertOutcomeRecord.alert_id == alert.id))
        assert record.action.value == "message_learner" and record.note == "Called them; new study plan"
