"""The report page in a real headless Chromium: every picture loads, and a screenshot is taken.

Chromium comes from the system (Debian: ``apt-get install chromium``) and is driven by
Playwright's Python package; browsers are never downloaded.  Without either, the test is skipped.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for candidate in (os.environ.get("BLOCKREG_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_report_page_renders_in_chromium_with_every_image_loaded(demo_report, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium executable (apt-get install chromium)")
    _, figures, page_html = demo_report
    page_file = tmp_path / "report.html"
    page_file.write_text(page_html, encoding="utf-8")
    screenshot = tmp_path / "shots" / "report.png"
    screenshot.parent.mkdir()

    requests = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load", timeout=60_000)
            images = page.evaluate(
                "Array.from(document.images).map(i => ({complete: i.complete, "
                "width: i.naturalWidth, height: i.naturalHeight, alt: i.alt}))")
            title = page.title()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert len(images) == len(figures)
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert {img["alt"] for img in images} == {fig.title for fig in figures.values()}
    assert title.startswith("Quality report")
    # self-contained: nothing but the page itself and its data: URIs is requested
    assert [u for u in requests if not u.startswith(("data:", "file:"))] == []
    assert screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes().startswith(b"\x89PNG")
