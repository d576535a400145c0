"""The dashboard in a real browser: submit, watch, judge, cancel, validate and tune.

Every check is made in the rendered page (SVG paths drawn, pictures decoded), and the API is asked
what really happened (jobs queued or not).
"""
from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.integration

SPEC_FIELDS = {"params.gridsize": "4, 4", "params.maxshift": "4, 4", "params.lambda": "0.01",
               "fixed_index": "0"}


def fill(page, values: dict):
    for name, value in values.items():
        page.fill(f'[name="{name}"]', value)
        page.dispatch_event(f'[name="{name}"]', "change")


def job_count(api) -> int:
    return api("get", "jobs?limit=1")["total"]


def wait_state(api, job_id, states, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api("get", f"jobs/{job_id}")
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_submit_through_the_form_watch_progress_and_see_the_results(page, api, stack, shoot):
    page.goto("/#/submit")
    page.get_by_role("button", name="Browse…").click()
    page.get_by_role("button", name=re.compile(r"movies")).click()
    page.get_by_role("button", name=re.compile(r"medium\.tif")).click()
    assert page.input_value('[name="input.path"]') == str(stack.data_dir / "movies" / "medium.tif")
    page.wait_for_selector("text=120 × 64 × 64 (tyx)")  # shape and axes from the reader
    fill(page, SPEC_FIELDS)
    # the preview: the fixed frame with a 4x4 aperture grid and its maxshift boxes
    page.wait_for_function("document.querySelectorAll('svg.figure rect.aperture').length === 16")
    assert page.eval_on_selector("svg.figure image", "el => el.getAttribute('href')").startswith(
        "data:image/png")
    shoot(page, "submit")
    before = job_count(api)

    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"#/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    assert job_count(api) == before + 1

    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.add(int(page.get_attribute("#summary [role=progressbar]", "aria-valuenow") or 0))
        if page.locator("#summary .state").inner_text() == "succeeded":
            break
        time.sleep(0.05)
    assert page.locator("#summary .state").inner_text() == "succeeded"
    assert len(seen - {0, 100}) >= 1, f"progress never seen between 0 and 100: {sorted(seen)}"

    # the mismatch plot: a drawn line through the 120 frames
    page.wait_for_function("document.querySelector('#mismatch path.series')?.getAttribute('d')"
                           "?.split('L').length === 120")
    # raw and registered pictures decoded, the deformation grid drawn over the raw frame
    page.wait_for_function("[...document.querySelectorAll('#frames img.frame-img')]"
                           ".filter(i => i.complete && i.naturalWidth === 64).length === 2")
    page.wait_for_function("document.querySelectorAll('#frames .defgrid path').length === 8")
    page.fill("#frame-slider", "5")
    page.dispatch_event("#frame-slider", "input")
    page.wait_for_selector("#frames output:has-text('source t = 5')")
    page.wait_for_function("document.querySelectorAll('#frames img.frame-img').length === 2 && "
                           "[...document.querySelectorAll('#frames img.frame-img')]"
                           ".every(i => i.complete && i.naturalWidth > 0 && i.alt.includes(' 5'))")
    assert page.locator("#workers tbody tr").count() >= 1
    assert stack.data_dir.as_posix() in page.locator("#output code.path").inner_text()
    # the quality report's page, embedded: its figures decoded
    report = page.frame_locator("#report iframe.report")
    report.locator("img").first.wait_for()
    widths = report.locator("img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(widths) >= 3 and all(w > 0 for w in widths), widths
    shoot(page, "job")
    shoot(page, "job-frames", at="#mismatch")
    shoot(page, "job-report", at="#report")

    page.goto("/#/jobs")
    row = page.locator(f"#job-{job_id}")
    assert row.locator(".state").inner_text() == "succeeded"
    assert row.get_by_role("progressbar").get_attribute("aria-valuenow") == "100"


def test_the_keyboard_reaches_the_navigation_and_a_job(page, api, stack):
    page.goto("/#/jobs")
    page.locator("table.jobs tbody tr[id^=job-] a").first.wait_for()
    reached = []
    for _ in range(20):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        if re.fullmatch(r"#\d+", reached[-1]):
            break
    assert reached[0] == "Skip to content"
    assert {"Jobs", "Submit", "Tune", "New job"} <= set(reached)
    assert re.fullmatch(r"#\d+", reached[-1]), reached
    page.keyboard.press("Enter")  # a link followed from the keyboard
    page.wait_for_url(re.compile(r"#/jobs/\d+$"))


def test_cancel_a_running_job_from_the_list(page, api, stack):
    spec = {"name": "long", "input": {"path": str(stack.data_dir / "movies" / "long.tif")},
            "params": {"gridsize": [4, 4], "maxshift": [4, 4], "lambda": 0.01}}
    job_id = api("post", "jobs", json=spec)["id"]
    page.goto("/#/jobs")
    row = page.locator(f"#job-{job_id}")
    row.locator(".state", has_text="running").wait_for()
    row.get_by_role("button", name=f"Cancel job {job_id}").click()
    page.locator(f"#job-{job_id} .state", has_text="cancelled").wait_for()
    job = wait_state(api, job_id, {"cancelled"})
    assert job["frames_done"] < job["frames_total"]


def test_the_form_offers_every_kind_of_job_the_api_accepts(page, api):
    page.goto("/#/submit")
    page.locator('[name="input.path"]').wait_for()
    options = page.locator("#f-algorithm option").evaluate_all("os => os.map(o => o.value)")
    body = api("get", "openapi.json")["paths"]["/api/v1/jobs"]["post"]["requestBody"]
    assert len(options) >= len(body["content"]["application/json"]["schema"]["oneOf"])
    assert "register:apertures" in options
    for option in options:
        page.select_option("#f-algorithm", option)
        assert page.locator("form.spec-form .field input").count() >= 3, option
    page.select_option("#f-algorithm", "register:apertures")
    assert page.locator('[name="params.gridsize"]').is_visible()
    assert page.locator('[name="kind"]').count() == 0  # fixed by the choice, not typed


def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_queued(page, api, stack):
    page.goto("/#/submit")
    page.fill('[name="input.path"]', str(stack.data_dir / "movies" / "short.tif"))
    fill(page, {**SPEC_FIELDS, "params.maxshift": "4, abc"})
    before = job_count(api)
    page.get_by_role("button", name="Submit job").click()
    error = page.locator("#f-params-maxshift-error")
    error.wait_for(state="visible")
    assert error.inner_text().strip()
    assert page.get_attribute('[name="params.maxshift"]', "aria-invalid") == "true"
    assert page.locator("#f-params-gridsize-error").inner_text() == ""
    assert "#/submit" in page.url
    assert job_count(api) == before
    # every field has a label a screen reader announces
    unlabelled = page.evaluate("[...document.querySelectorAll('main input, main select')]"
                               ".filter(e => !e.labels.length && !e.getAttribute('aria-label'))"
                               ".map(e => e.name || e.id)")
    assert unlabelled == []


def test_tune_a_grid_and_promote_a_setting_to_a_full_job(page, api, stack, shoot):
    page.goto("/#/tune")
    page.fill('[name="input.path"]', str(stack.data_dir / "movies" / "short.tif"))
    fill(page, {"params.gridsize": "4, 4", "params.maxshift": "4, 4", "fixed_index": "0"})
    page.fill("#t-start", "2")
    page.fill("#t-count", "4")
    page.fill("#t-lambda", "0.01")
    page.fill("#t-autolambda", "1e-4, 10")
    page.fill("#t-maxshift", "3x3; 5x5")
    before = job_count(api)
    page.get_by_role("button", name="Run tune batch").click()
    page.wait_for_url(re.compile(r"#/tune/\d+$"))
    tune_id = int(page.url.rsplit("/", 1)[1])
    assert job_count(api) == before + 4  # (a fixed and an automatic lambda) x 2 maxshifts

    page.wait_for_function("document.querySelectorAll('.run .state').length === 4 && "
                           "[...document.querySelectorAll('.run .state')]"
                           ".every(s => s.textContent === 'succeeded')", timeout=90_000)
    page.wait_for_function("[...document.querySelectorAll('.run .reduction')]"
                           ".every(d => d.textContent.endsWith('%'))")
    page.wait_for_function("[...document.querySelectorAll('.run img')]"
                           ".filter(i => i.complete && i.naturalWidth > 0).length === 4")
    # the auto-lambda curve: the swept points and the fitted sigmoid
    page.wait_for_function("document.querySelectorAll('svg.plot g.series circle').length >= 4 && "
                           "document.querySelector('svg.plot path.series')?.getAttribute('d')")
    tune = api("get", f"tune/{tune_id}")
    assert tune["lambda_curve"] and tune["lambda_curve"]["fitted"]
    shoot(page, "tune", full_page=True)

    chosen = tune["runs"][1]
    page.locator(f"#run-{chosen['job_id']}").get_by_role("button", name="Run as full job").click()
    page.wait_for_url(re.compile(r"#/jobs/\d+$"))
    full = api("get", f"jobs/{int(page.url.rsplit('/', 1)[1])}")
    assert full["spec"]["params"] == chosen["spec"]["params"]
    assert full["spec"]["input"].get("frames") is None  # the whole movie, not the tuned frames
    assert full["frames_total"] == 40

    page.goto("/#/jobs")  # by now: finished, cancelled and tune jobs, and this one
    page.locator(f"#job-{full['id']}").wait_for()
    shoot(page, "jobs")


def test_the_login_form_appears_when_the_api_answers_401(page):
    page.route("**/api/v1/jobs?*", lambda route: route.fulfill(
        status=401, content_type="application/json",
        body='{"message": "a token is required", "errors": []}'))
    page.goto("/#/jobs")
    page.get_by_label("API token").wait_for()
    assert "a token is required" in page.locator("#login-error").inner_text()
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    page.locator("#login-error", has_text="not valid").wait_for()
    assert page.evaluate("sessionStorage.getItem('blockreg.token')") is None
