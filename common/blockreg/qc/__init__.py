"""Quality control of a registration: the report of a finished job.

Typical use (what job finalisation, the API and ``blockreg report`` do)::

    from blockreg.qc import write_report, load_report, load_report_html
    report, html = write_report("job-7.zarr")     # compute, draw, save into the store
    report = load_report("job-7.zarr")            # later: the stored JSON
    page = load_report_html("job-7.zarr")         # and the stored HTML page

Parts: :mod:`.metrics` (pure functions on arrays), :mod:`.report` (reads a store, computes the
numbers), :mod:`.figures` (matplotlib pictures, optional ``report`` extra), :mod:`.html` (one
self-contained page), :mod:`.storage` (where the report lives inside the store).  The numbers are
explained in docs/report.md.
"""
from __future__ import annotations

from .report import DEFAULT_MAX_FRAMES, Analysis, NoReport, analyse, compute_report, write_report
from .storage import load_report, load_report_html, save_report

__all__ = ["Analysis", "NoReport", "analyse", "compute_report", "write_report", "save_report", "load_report",
           "load_report_html", "render_html", "make_figures", "DEFAULT_MAX_FRAMES"]


def render_html(report, figures) -> str:
    """The report as one self-contained HTML page (see :func:`blockreg.qc.html.render_html`)."""
    from .html import render_html as _render

    return _render(report, figures)


def make_figures(report, images):
    """The report's pictures (needs matplotlib; see :func:`blockreg.qc.figures.make_figures`)."""
    from .figures import make_figures as _make

    return _make(report, images)
