"""The demo job through the real service: its quality report (computed by the worker that
finished the job) shows a higher correlation after registration than before, the demo prints it,
and the HTML page the API serves renders in a real headless Chromium with every image loaded."""
from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "qc"))
from test_browser import CHROMIUM_ARGS, _chromium  # noqa: E402  (the qc tests' browser setup)


def test_demo_report_improves_and_renders_in_chromium(service, client, tmp_path):
    pytest.importorskip("matplotlib")
    from blockreg_services.demo import run_demo

    out = io.StringIO()
    assert run_demo(home=service.home, server=service.url, frames=6, out=out) == 0
    text = out.getvalue()
    job_id = int(re.search(r"submitted job (\d+)", text).group(1))
    assert "displacement RMSE" in text          # the ground-truth error is still there
    assert "correlation with the fixed image (median)" in text

    report = client.report(job_id)
    summary = report["summary"]
    assert summary["correlation_after_median"] > summary["correlation_before_median"]
    assert summary["frames_with_results"] == 6

    sync_api = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium executable (apt-get install chromium)")
    page_file = tmp_path / "report.html"
    page_file.write_text(client.report(job_id, html=True), encoding="utf-8")
    screenshot = tmp_path / "demo-report.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                     timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_file.as_uri(), wait_until="load", timeout=60_000)
            images = page.evaluate(
                "Array.from(document.images).map(i => ({complete: i.complete, "
                "width: i.naturalWidth, height: i.naturalHeight}))")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert images and all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images)
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000
