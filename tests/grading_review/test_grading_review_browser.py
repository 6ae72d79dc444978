"""End to end in headless Chromium: the platform served by uvicorn with its background AI grading worker and a
real (tiny) essay grader; an instructor logs in on the review page, sees the AI grades, overrides one and
accepts another with the keyboard; the learners then see their final grades, one labelled AI-assisted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from browser_support import BROWSER, launch_chromium, served
from grading_review_fixtures import PASSWORD, Api, essay, make_app

pytestmark = BROWSER


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_instructor_reviews_ai_grades_in_the_browser_and_learners_see_final_grades(review_settings, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from learnloop.asgi import attach_grading_worker

    app, _ = make_app(review_settings)
    attach_grading_worker(app, settings=review_settings, poll_seconds=0.3)  # as the served platform runs it
    with served(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        api = Api(client)
        instructor = api.person("instructor", "Ina Instructor")
        course = api.essay_course(instructor, title="Essay: the cyclist")
        learners = [api.person("student", name) for name in ("Ada Learner", "Bo Learner")]
        submitted = {api.submit(learner, course, essay(quality, seed=20 + i)).json()["id"]: learner
                     for i, (learner, quality) in enumerate(zip(learners, (0.85, 0.2), strict=True))}
        # The background worker grades both essays without being asked.
        queue = _wait_for(lambda: (q := api.queue(instructor, course).json())["data"] and all(
            i["review_state"] == "ai_suggested" for i in q["data"]) and q, 20, "the worker's AI suggestions")
        ai_scores = {i["submission_id"]: i["ai_score"] for i in queue["data"]}
        assert set(ai_scores) == set(submitted)

        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/grading/courses/{course.id}")
            assert "/staff/login" in page.url  # not signed in yet: the one staff sign-in, then back here
            page.get_by_label("Email").fill(instructor.email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"**/grading/courses/{course.id}")
            # One HttpOnly, SameSite=Strict cookie for every staff page (/staff and /grading).
            (cookie,) = page.context.cookies()
            assert (cookie["name"], cookie["path"], cookie["httpOnly"], cookie["sameSite"]) == (
                "learnloop_staff_token", "/", True, "Strict")
            # The staff home lists the course with its waiting essays and links to its queue and alerts.
            page.get_by_role("link", name="Your courses").first.click()
            page.wait_for_url("**/staff/courses")
            row = page.locator(f"#courses tr[data-course='{course.id}']")
            title = row.locator("th").inner_text().strip()
            assert title
            expect(row.locator("td").nth(0)).to_contain_text("2 ·")  # both essays wait for a decision
            expect(row.get_by_role("link", name=f"At-risk alerts of {title}")).to_have_attribute(
                "href", f"/staff/courses/{course.id}/alerts")
            row.get_by_role("link", name=f"Grading queue of {title}").click()
            page.wait_for_url(f"**/grading/courses/{course.id}")

            items = page.locator("article.item")
            expect(items).to_have_count(2)
            first = items.nth(0)
            override_id = first.get_attribute("data-submission")
            accept_id = next(s for s in submitted if s != override_id)
            expect(first.locator(".ai-grade")).to_contain_text(f"AI grade: {ai_scores[override_id]:g} / 3")
            expect(first.locator(".ai-grade")).to_contain_text("confidence")
            expect(first.locator("ul.reasons li").first).to_be_visible()
            expect(first.locator(".rubric")).to_contain_text("score scale 0–3")
            expect(page.locator("#agreement")).to_contain_text("not enough decisions yet")
            # WCAG basics: every visible form control has a label; the focused control shows an outline.
            unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll(
                'input:not([type=hidden]), textarea, select')).filter(e => !e.labels || !e.labels.length).length""")
            assert unlabelled == 0
            shot = Path(os.environ.get("LEARNLOOP_SCREENSHOT_DIR", tmp_path)) / "grading-review.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            print(f"review page screenshot: {shot}")

            # Focus order starts with the skip link, which lands on the main content.
            page.keyboard.press("Tab")
            expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
            # Override the first with the keyboard: j selects it, o jumps to its score field.
            page.keyboard.press("j")
            expect(first).to_be_focused()
            page.keyboard.press("o")
            score_field = first.get_by_label("Final score (0–3 points)")
            expect(score_field).to_be_focused()
            outline = score_field.evaluate("e => getComputedStyle(e).outlineStyle")
            assert outline != "none"
            new_score = 3 if ai_scores[override_id] != 3 else 0
            score_field.fill(str(new_score))
            first.get_by_label("Comment for the learner").fill("Strong evidence from the text; full marks.")
            first.get_by_role("button", name="Save my grade").click()
            expect(page.locator("#flash")).to_contain_text(f"Saved your grade {new_score}/3")
            # Accept the other one with "a".
            remaining = page.locator("article.item")
            expect(remaining).to_have_count(1)
            assert remaining.first.get_attribute("data-submission") == accept_id
            page.keyboard.press("a")
            expect(page.locator("#flash")).to_contain_text("Accepted the AI grade")
            expect(page.locator("article.item")).to_have_count(0)
            expect(page.locator("#agreement")).to_contain_text("QWK")

            page.goto(f"{base}/staff/courses")
            expect(page.locator(f"#courses tr[data-course='{course.id}'] td").nth(0)).to_contain_text("0 ·")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/staff/login")
            assert page.context.cookies() == []

            # The learner whose grade was accepted signs in on the same page (the old URL redirects there)
            # and lands on their grades, labelled AI-assisted.
            learner = submitted[accept_id]
            other = browser.new_context().new_page()
            other.goto(f"{base}/grading/login")
            assert "/staff/login" in other.url
            other.get_by_label("Email").fill(learner.email)
            other.get_by_label("Password").fill(PASSWORD)
            other.get_by_role("button", name="Sign in").click()
            other.wait_for_url("**/grading/my-grades")
            row = other.locator(f"#grades tr[data-submission='{accept_id}']")
            expect(row).to_contain_text(f"{ai_scores[accept_id]:g} / 3")
            expect(row).to_contain_text("AI-assisted")
            browser.close()

        # And through the API: both final grades, labelled, with the instructor's comment.
        accepted = client.get(f"/api/v1/submissions/{accept_id}", headers=submitted[accept_id].headers).json()
        assert (accepted["score"], accepted["grade_label"]) == (ai_scores[accept_id], "AI-assisted")
        overridden = client.get(f"/api/v1/submissions/{override_id}",
                                headers=submitted[override_id].headers).json()
        assert (overridden["score"], overridden["grade_label"]) == (new_score, "Instructor-graded")
        assert overridden["feedback"] == "Strong evidence from the text; full marks."
