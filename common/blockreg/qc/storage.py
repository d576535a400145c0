"""Where a quality report lives: a ``report`` group inside the job's results store.

A results store is a Zarr v3 group (a directory).  Plain files inside it would make Zarr warn
("not recognized as a component of a Zarr hierarchy") every time a reader lists the store's
members, so the report is stored the Zarr way, in a child group::

    job.zarr/
        zarr.json            the results (attributes "blockreg": spec, nodes, frames, ...)
        u/, mismatch/, ...   the monitored arrays
        report/zarr.json     attributes "blockreg_report": the report (JSON, see docs/report.md)
        report/html/         1-D uint8 array: the self-contained HTML page, UTF-8

``report/zarr.json`` is plain JSON a person or any Zarr library can read; :func:`load_report_html`
returns the page.  Saving again replaces both, so the report of a job can be recomputed.

This module also reads the store's arrays for :mod:`blockreg.qc.report`, tolerating an image
stored either as a plain array or as an OME-Zarr image group (level 0 of its first multiscale).
"""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["REPORT_GROUP", "REPORT_ATTR", "save_report", "load_report", "load_report_html",
           "store_member", "plain_json"]

REPORT_GROUP = "report"
REPORT_ATTR = "blockreg_report"
_HTML_ARRAY = "html"


def _open(path, mode):
    from ..store import open_store

    return open_store(os.fspath(path), mode)


def store_member(group, name):
    """The array ``name`` of a results group, or None.

    An OME-Zarr image group is resolved to the array of its first multiscale's first dataset.
    """
    if name not in group:
        return None
    node = group[name]
    if hasattr(node, "shape"):
        return node
    attrs = dict(node.attrs)
    multiscales = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    path = multiscales[0]["datasets"][0]["path"] if multiscales else "0"
    if path in node and hasattr(node[path], "shape"):
        return node[path]
    return None


def plain_json(value):
    """JSON-safe copy: NumPy types to Python, non-finite floats to None (JSON has no NaN)."""
    from ..store import jsonable

    return jsonable(value, nonfinite=lambda _: None)


def save_report(store_path, report: dict, html: str | None = None) -> None:
    """Store ``report`` (and its HTML page) in the ``report`` group of a results store.

    Parameters
    ----------
    store_path : path-like
        An existing results store (written by the runner or the service).
    report : dict
        As returned by :func:`blockreg.qc.compute_report`; NumPy values and NaN are converted
        (NaN becomes ``null``).
    html : str, optional
        The page from :func:`blockreg.qc.render_html`.  Without it a stored page is removed, so
        the page never describes an older report.
    """
    group = _open(store_path, "r+")
    report = plain_json(report)
    json.dumps(report, allow_nan=False)  # fail here, not in a reader, if something is not JSON
    sub = group.create_group(REPORT_GROUP, overwrite=True)
    sub.attrs[REPORT_ATTR] = report
    if html is not None:
        data = np.frombuffer(html.encode("utf-8"), dtype=np.uint8)
        arr = sub.create_array(_HTML_ARRAY, shape=data.shape, chunks=(max(1, data.size),),
                               dtype=np.uint8, fill_value=0)
        arr[...] = data


def load_report(store_path) -> dict | None:
    """The stored report of a results store, or None when none was saved."""
    group = _open(store_path, "r")
    if REPORT_GROUP not in group:
        return None
    return dict(group[REPORT_GROUP].attrs).get(REPORT_ATTR)


def load_report_html(store_path) -> str | None:
    """The stored HTML page of a results store, or None when none was saved."""
    group = _open(store_path, "r")
    if REPORT_GROUP not in group or _HTML_ARRAY not in group[REPORT_GROUP]:
        return None
    return np.asarray(group[REPORT_GROUP][_HTML_ARRAY][...]).tobytes().decode("utf-8")
