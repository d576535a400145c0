"""The report as one self-contained HTML page.

Everything is inside the page: the pictures are base64 PNG ``data:`` URIs and the styles an inline
``<style>``; there are no scripts, external fonts or links to fetch, so the file opens from a lab
share, an e-mail attachment or the API alike.
"""
from __future__ import annotations

import base64
import html as _html
import math

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.warnings { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.6em 1em; }
.ok { background: #eef8ee; border-left: 4px solid #4a4; padding: 0.6em 1em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; max-width: 60em; }
"""


def _esc(value) -> str:
    return _html.escape(str(value), quote=True)


def _fmt(value, digits=3, percent=False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if percent:
        return f"{100 * value:.{max(0, digits - 2)}f}%"
    return f"{value:.{digits}g}"


def _key_figures(report):
    s = report["summary"]
    frac = s.get("frames_improved_fraction")
    rows = [
        ("Frames registered", f"{s['frames_with_results']} of {s['frames']}",
         "frames with a finite displacement"),
        ("Correlation with fixed, median before", _fmt(s["correlation_before_median"]),
         f"Pearson r over {s['frames_sampled']} sampled frames"),
        ("Correlation with fixed, median after", _fmt(s["correlation_after_median"]),
         "higher is better; 1 = identical up to brightness"),
        ("Median change of correlation", _fmt(s["correlation_change_median"]),
         f"after - before per frame; improved in {_fmt(frac, 3, percent=True)} of frames"),
        ("Crispness of the mean image, before", _fmt(s["crispness_before"], 4),
         "Frobenius norm of the gradient of the mean image"),
        ("Crispness of the mean image, after", _fmt(s["crispness_after"], 4),
         f"ratio after/before {_fmt(s['crispness_ratio'])}; above 1 = sharper"),
        ("Mismatch with fixed, median before / after",
         f"{_fmt(s['mismatch_before_median'])} / {_fmt(s['mismatch_after_median'])}",
         "normalised squared difference; lower is better"),
        ("Largest displacement", f"{_fmt(s['max_displacement'])} px",
         f"median over frames of the largest node displacement: "
         f"{_fmt(s['median_max_displacement'])} px"),
        ("Frames with nodes at the maxshift bound", _fmt(s["frames_at_bound"]),
         f"of all node displacements: {_fmt(s['node_frames_at_bound_fraction'], 3, percent=True)}"),
        ("Frames that fold", _fmt(s["frames_with_folds"]),
         f"largest folded fraction {_fmt(s['fold_fraction_max'], 3, percent=True)}; smallest "
         f"det(I + grad u) {_fmt(s['min_jacobian_det'])}"),
    ]
    if s.get("mismatch_median") is not None:
        rows.append(("Optimiser penalty, median", _fmt(s["mismatch_median"]),
                     "the monitored 'mismatch' per frame"))
    body = "".join(f"<tr><th>{_esc(a)}</th><td class=\"num\">{_esc(b)}</td><td>{_esc(c)}</td></tr>"
                   for a, b, c in rows)
    return f"<table><tr><th>figure</th><th>value</th><th>meaning</th></tr>{body}</table>"


def _warnings(report):
    items = report.get("warnings") or []
    if not items:
        return ('<div class="ok">No warnings: no displacement at the maxshift bound, no folds, '
                "correlation not lowered.</div>")
    return '<div class="warnings"><ul>' + "".join(f"<li>{_esc(w)}</li>" for w in items) + \
        "</ul></div>"


def _largest(report):
    rows = report.get("largest_displacements") or []
    if not rows:
        return ""
    body = "".join(
        f"<tr><td class=\"num\">{_esc(r['source_t'])}</td><td class=\"num\">"
        f"{_esc(_fmt(r['max_abs_u']))}</td><td>{_esc(r['node'])}</td>"
        f"<td>{_esc(', '.join(_fmt(v) for v in r['u']))}</td></tr>" for r in rows)
    return ("<h2>Largest displacements</h2><table><tr><th>source frame</th><th>|u| (px)</th>"
            f"<th>node (grid index)</th><th>u (px, axis order)</th></tr>{body}</table>")


def _bound(report, limit=20):
    b = report.get("bound") or {}
    if not b.get("frames"):
        return ""
    source_t = report["frames"]["source_t"]
    frames = [source_t[p] for p in b["frames"]]
    shown = ", ".join(str(t) for t in frames[:50]) + (" ..." if len(frames) > 50 else "")
    nodes = "".join(f"<tr><td>{_esc(n['node'])}</td><td class=\"num\">{n['frames']}</td></tr>"
                    for n in b["nodes"][:limit])
    more = f"<p class=\"meta\">{len(b['nodes']) - limit} more nodes not shown.</p>" \
        if len(b["nodes"]) > limit else ""
    return (f"<h2>Displacements at the maxshift bound</h2><p>maxshift {_esc(b['maxshift'])} px "
            f"(tolerance {_esc(b['tolerance'])} px). Source frames: {_esc(shown)}</p>"
            f"<table><tr><th>node (grid index)</th><th>frames at the bound</th></tr>{nodes}"
            f"</table>{more}")


def _job(report):
    job = report.get("job") or {}
    rows = [("input", job.get("input")), ("frames", job.get("frames")),
            ("image shape", job.get("image_shape")), ("axes", job.get("axes")),
            ("spacing", job.get("spacing")), ("grid size", job.get("gridsize")),
            ("maxshift (px)", job.get("maxshift")), ("fixed frame", job.get("fixed_index")),
            ("stored arrays", ", ".join(job.get("monitored") or [])),
            ("results store", report.get("store"))]
    body = "".join(f"<tr><th>{_esc(a)}</th><td>{_esc('n/a' if b is None else b)}</td></tr>"
                   for a, b in rows)
    return f"<h2>Job</h2><table>{body}</table>"


def _figure(name, figure):
    if isinstance(figure, (bytes, bytearray)):
        title, caption, png = name.replace("_", " "), "", bytes(figure)
    else:
        title, caption, png = figure.title, figure.caption, figure.png
    data = base64.b64encode(png).decode("ascii")
    return (f'<h2 id="{_esc(name)}">{_esc(title)}</h2><figure>'
            f'<img src="data:image/png;base64,{data}" alt="{_esc(title)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def render_html(report: dict, figures) -> str:
    """The report and its pictures as one self-contained HTML page.

    Parameters
    ----------
    report : dict
        From :func:`blockreg.qc.compute_report`.
    figures : mapping of str -> FigureImage or bytes
        From :func:`blockreg.qc.figures.make_figures` (PNG bytes alone get their key as title).

    Returns
    -------
    str
        A complete HTML5 document; every picture is an ``<img>`` with a ``data:image/png`` URI.
    """
    job = report.get("job") or {}
    name = job.get("name") or "registration job"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Quality report: {_esc(name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Quality report: {_esc(name)}</h1>",
        f'<p class="meta">blockreg {_esc(report.get("blockreg_version"))}, computed '
        f'{_esc(report.get("created"))}. How to read this page: docs/report.md.</p>',
        "<h2>Warnings</h2>", _warnings(report),
        "<h2>Key figures</h2>", _key_figures(report),
    ]
    parts += [_figure(key, fig) for key, fig in figures.items()]
    parts += [_largest(report), _bound(report), _job(report), "</body></html>"]
    return "\n".join(p for p in parts if p)
