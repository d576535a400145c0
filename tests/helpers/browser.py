"""Shared by the dashboard's browser tests (tests/e2e): the system Chromium, a movie, the embedded
stack's environment, and a page whose console is watched."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

# Debian's chromium (apt-get install chromium): browsers are never downloaded (no playwright install)
CHROMIUM = os.environ.get("BLOCKREG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TESTS = Path(__file__).resolve().parents[1]
SHAPE = (64, 64)


def write_movie(path: Path, nframes: int, seed: int = 0) -> Path:
    """A small deforming movie (uint16 TIFF, TYX); long ones repeat a short synthetic cycle."""
    import tifffile

    from blockreg.synthetic import make_movie

    cycle, _, _ = make_movie(SHAPE, min(nframes, 16), max_translation=3, max_local=1, seed=seed)
    frames = np.resize(cycle, (nframes, *SHAPE))
    tifffile.imwrite(path, frames.astype(np.uint16), photometric="minisblack",
                     metadata={"axes": "TYX"})
    return path


def stack_env(data: Path, **extra) -> dict:
    """The embedded stack's environment: inputs and outputs confined to ``data``, small batches
    (progress moves frame by frame), one FFT thread per worker (two workers share the CPUs)."""
    return {"BLOCKREG_DATA_ROOTS": str(data), "BLOCKREG_BATCH_FRAMES": "2",
            "BLOCKREG_FFT_WORKERS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
            **extra}


class ConsoleWatch:
    """Console errors, uncaught exceptions and 5xx answers seen by a page."""

    def __init__(self, page):
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("response", self._response)

    def _console(self, message):
        # Chromium logs every 4xx answer as "Failed to load resource": a network log of an answer
        # the page asked for on purpose (a 422 of a bad form, a 401 before login), not an error
        if message.type == "error" and not message.text.startswith(
                "Failed to load resource: the server responded with a status of 4"):
            self.problems.append(f"console: {message.text}")

    def _response(self, response):
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status} {response.url}")


def open_page(browser, url):
    """(context, page, watch): a 1280x800 page on ``url`` and the watch of its console."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return context, page, ConsoleWatch(page)
