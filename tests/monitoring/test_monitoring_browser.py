"""The operator page in headless Chromium: the drift row, the link to the Evidently report, a screenshot."""

from __future__ import annotations

import os
from pathlib import Path

from browser_support import BROWSER, launch_chromium, served
from conftest import FEATURES

from pipelines.monitoring.api import ModelStatus, check_drift, operator_router, record_registry

pytestmark = BROWSER


def test_operator_opens_the_drift_report_from_the_page(settings, reference_window, drifted_window, tmp_path):
    from fastapi import FastAPI
    from playwright.sync_api import sync_playwright

    record_registry([ModelStatus("risk", {"champion": "3"}, ["3"])], settings=settings)
    check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                settings=settings)
    app = FastAPI()
    app.include_router(operator_router(settings=settings))
    with served(app) as base, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/operator")
        row = page.locator("#models tr[data-model=risk]")
        assert "DRIFT" in row.inner_text() and "champion → v3" in row.inner_text()
        shot = Path(os.environ.get("LEARNLOOP_SCREENSHOT_DIR", tmp_path)) / "operator.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        row.get_by_role("link", name="report").click()
        page.wait_for_load_state()
        assert page.url.endswith(".html") and "/operator/reports/risk/" in page.url
        # The report is a client-side rendered Evidently dashboard: wait for the drifted column to appear.
        page.get_by_text("clicks_total_7d").first.wait_for(timeout=30_000)
        browser.close()
