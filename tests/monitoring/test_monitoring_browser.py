"""The operator page in headless Chromium: the drift row, the link to the Evidently report, a screenshot."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import FEATURES

from pipelines.monitoring.api import ModelStatus, check_drift, operator_router, record_registry

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium (apt-get install -y chromium)")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_operator_opens_the_drift_report_from_the_page(settings, reference_window, drifted_window, tmp_path):
    import uvicorn
    from fastapi import FastAPI
    from playwright.sync_api import sync_playwright

    record_registry([ModelStatus("risk", {"champion": "3"}, ["3"])], settings=settings)
    check_drift("risk", reference_window, drifted_window, features=FEATURES, prediction_column=None,
                settings=settings)
    app = FastAPI()
    app.include_router(operator_router(settings=settings))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/operator")
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
    finally:
        server.should_exit = True
        thread.join(timeout=10)
