"""The report's pictures, drawn with matplotlib into PNG bytes.

matplotlib is imported inside the functions (it is an optional dependency: the ``report`` extra)
and used through ``matplotlib.figure.Figure`` with the Agg canvas, never through ``pyplot``: no
global backend or figure state, so a server process can draw in several threads.

Every function takes the report (:func:`blockreg.qc.compute_report`) and the images of
:class:`blockreg.qc.report.Analysis`, and returns a :class:`FigureImage`.  3-D images are shown by
their middle plane along the first spatial axis.
"""
from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np

from ..io.base import default_axes

__all__ = ["FigureImage", "make_figures", "exaggeration"]

_DPI = 96
_BEFORE, _AFTER = "#d62728", "#1f77b4"
_NO_DATA = "#4a78b5"  # pixels whose source lies outside the image (NaN)


class FigureImage(NamedTuple):
    """One picture of the report: a title, a caption saying how to read it, and the PNG bytes."""

    title: str
    caption: str
    png: bytes


def _figure(width, height):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("the report's figures need matplotlib: "
                          "pip install 'blockreg[report]'") from None

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _aspect(images) -> float:
    """Height / width of the images shown (1 when there is none), kept within 1/4 .. 4."""
    for name in ("fixed", "mean_after", "grid_frame"):
        if images.get(name) is not None:
            h, w = _plane(images[name]).shape[-2:]
            return float(np.clip(h / w, 0.25, 4.0))
    return 1.0


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _plane(img):
    """A 2-D view of an image: itself, or the middle plane along the first axis of a 3-D one."""
    img = np.asarray(img, dtype=np.float64)
    while img.ndim > 2:
        img = img[img.shape[0] // 2]
    return img


def _limits(*images):
    """Display range shared by several images: 1st to 99.5th percentile of their finite pixels."""
    values = np.concatenate([np.ravel(_plane(i)) for i in images if i is not None])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _show(ax, img, title, limits):
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if img is None:
        ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
        ax.set_facecolor("#eeeeee")
        return
    ax.imshow(_plane(img), cmap=_gray(), vmin=limits[0], vmax=limits[1], interpolation="nearest")


def _gray():
    import matplotlib

    return matplotlib.colormaps["gray"].with_extremes(bad=_NO_DATA)


def _overlay(fixed, moving):
    """Fixed image in magenta, frame in green: grey where they agree, colour fringes where not."""
    def scaled(img):
        lo, hi = _limits(img)
        return np.nan_to_num(np.clip((_plane(img) - lo) / (hi - lo), 0, 1))

    f, m = scaled(fixed), scaled(moving)
    rgb = np.stack([f, m, f], axis=-1)
    rgb[~np.isfinite(_plane(moving))] = 0  # no data: black, not a magenta "misalignment"
    return rgb


def _plane_note(images):
    shape = np.shape(images.get("fixed")) if images.get("fixed") is not None else ()
    return f" (3-D: plane {shape[0] // 2} of {shape[0]} along the first axis)" if len(shape) == 3 \
        else ""


def mean_images(report, images) -> FigureImage:
    fig = _figure(10, 3.3 * _aspect(images) + 0.5)
    axes = fig.subplots(1, 3)
    limits = _limits(images.get("fixed"), images.get("mean_after"))
    s = report["summary"]
    _show(axes[0], images.get("mean_before"), "mean before", limits)
    _show(axes[1], images.get("mean_after"), "mean after", limits)
    _show(axes[2], images.get("fixed"), "fixed image", limits)
    caption = (f"Mean of {s['frames_sampled']} frames before and after registration, beside the "
               "fixed image, all preprocessed as the job did and on one grey scale"
               f"{_plane_note(images)}. A good registration makes the mean after as sharp as the "
               f"fixed image (crispness {_num(s['crispness_before'])} before, "
               f"{_num(s['crispness_after'])} after).")
    return FigureImage("Mean image before and after", caption, _png(fig))


def worst_frame(report, images) -> FigureImage:
    fig = _figure(10, 2 * (3.3 * _aspect(images) + 0.5))
    axes = fig.subplots(2, 3)
    before, after, fixed = images.get("worst_before"), images.get("worst_after"), images.get("fixed")
    limits = _limits(fixed, after)
    position = report.get("worst_frame")
    t = report["frames"]["source_t"][position] if position is not None else None
    _show(axes[0, 0], fixed, "fixed image", limits)
    _show(axes[0, 1], before, f"frame {t} before", limits)
    _show(axes[0, 2], after, f"frame {t} after", limits)
    axes[1, 0].axis("off")
    axes[1, 0].text(0.0, 0.5, "overlays:\nfixed = magenta\nframe = green\ngrey = aligned",
                    va="center", fontsize=10, transform=axes[1, 0].transAxes)
    for ax, img, name in ((axes[1, 1], before, "before"), (axes[1, 2], after, "after")):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"overlay {name}", fontsize=10)
        if img is not None and fixed is not None:
            ax.imshow(_overlay(fixed, img), interpolation="nearest")
        else:
            _show(ax, None, f"overlay {name}", limits)
    rows = dict(zip(report["sampled"]["position"], report["sampled"]["correlation_after"]))
    caption = (f"The sampled frame with the lowest correlation after registration (source frame "
               f"{t}, correlation {_num(rows.get(position))}){_plane_note(images)}. In the "
               "overlays, coloured fringes are misalignment; after registration they should be "
               "gone. Pixels whose source lies outside the frame have no data (blue in the "
               "images, black in the overlays).")
    return FigureImage("Worst frame before and after", caption, _png(fig))


def exaggeration(max_displacement, node_spacing) -> float:
    """Display factor for the displacements: about 0.4 node spacings for the largest, at least 1.

    Rounded to 1, 2 or 5 times a power of ten so the caption states a readable number.
    """
    if not max_displacement or not np.isfinite(max_displacement) or max_displacement <= 0:
        return 1.0
    raw = 0.4 * float(node_spacing) / float(max_displacement)
    if raw <= 1:
        return 1.0
    power = 10.0 ** np.floor(np.log10(raw))
    return float(max(m * power for m in (1, 2, 5) if m * power <= raw))


def deformation_grid(report, images) -> FigureImage:
    from ..reg.deformation import GridDeformation

    fig = _figure(7, 7 * min(_aspect(images), 1.4) + 0.9)
    ax = fig.subplots()
    nodes, u = images["nodes"], images["grid_u"]
    phi = GridDeformation(u, nodes)
    N = len(nodes)
    ny, nx = nodes[-2], nodes[-1]
    # a 3-D grid is cut at the plane the background image shows (its middle along the first axis)
    shape = np.shape(images.get("grid_frame", images.get("fixed")))
    lead = [float(shape[a] // 2) if len(shape) == N else float(n[len(n) // 2])
            for a, n in enumerate(nodes[:-2])]
    spacing = min(float(n[1] - n[0]) for n in (ny, nx) if len(n) > 1) if max(len(ny), len(nx)) > 1 \
        else 1.0
    norms = np.sqrt(np.sum(u * u, axis=-1))
    scale = exaggeration(float(norms.max()), spacing)
    background = images.get("grid_frame")
    over = "this frame before registration"
    if background is None:
        background, over = images.get("fixed"), "the fixed image"
    if background is not None:
        lo, hi = _limits(background)
        ax.imshow(_plane(background), cmap=_gray(), vmin=lo, vmax=hi, interpolation="nearest")

    def line(ys, xs):
        pts = np.stack(np.broadcast_arrays(*[np.full_like(xs, v) for v in lead], ys, xs), axis=-1)
        d = phi.displacement_at(pts)
        return xs + scale * d[:, N - 1], ys + scale * d[:, N - 2]

    dense_x = np.linspace(nx[0], nx[-1], 10 * max(1, len(nx) - 1) + 1)
    dense_y = np.linspace(ny[0], ny[-1], 10 * max(1, len(ny) - 1) + 1)
    for y in ny:
        ax.plot(dense_x, np.full_like(dense_x, y), color="cyan", lw=0.8, ls="--")
        ax.plot(*line(np.full_like(dense_x, y), dense_x), color="#ff7f0e", lw=1.4)
    for x in nx:
        ax.plot(np.full_like(dense_y, x), dense_y, color="cyan", lw=0.8, ls="--")
        ax.plot(*line(dense_y, np.full_like(dense_y, x)), color="#ff7f0e", lw=1.4)
    # the nodes themselves, red where a component sits at the maxshift bound
    gy, gx = np.meshgrid(ny, nx, indexing="ij")
    d = phi.displacement_at(np.stack(np.broadcast_arrays(*lead, gy, gx), axis=-1))
    px, py = gx + scale * d[..., N - 1], gy + scale * d[..., N - 2]
    # bound markers: the node plane nearest to the cut (the nodes themselves are what is bounded)
    u_plane = u[tuple(int(np.argmin(np.abs(n - z))) for n, z in zip(nodes[:-2], lead))]
    maxshift = report["job"].get("maxshift")
    hit = np.zeros(gy.shape, dtype=bool)
    if maxshift is not None:
        from .metrics import at_bound

        hit = at_bound(u_plane, maxshift, report["bound"]["tolerance"])
    ax.scatter(px[~hit], py[~hit], s=14, color="#ff7f0e", zorder=3, label="node")
    if hit.any():
        ax.scatter(px[hit], py[hit], s=30, color="red", marker="s", zorder=4,
                   label="node at maxshift bound")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    position = report.get("grid_frame")
    t = report["frames"]["source_t"][position]
    ax.set_title(f"frame {t}: displacements drawn x{scale:g}", fontsize=10)
    plane = f" (3-D: cut at plane {lead[0]:g} along the first axis)" if N == 3 else ""
    caption = (f"The deformation of source frame {t}, the frame with the largest displacement "
               f"({_num(float(norms.max()))} px){plane}, over {over}. Dashed cyan: the node grid "
               "of the fixed image; orange: where registration found those points in this frame, "
               f"x + u(x), with u exaggerated {scale:g} times so the shape is visible. Smooth, "
               "uncrossed orange lines are a plausible deformation; crossed lines are folds; red "
               "squares are nodes at the maxshift bound.")
    return FigureImage("Deformation grid", caption, _png(fig))


def _series(values):
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def displacement(report, images) -> FigureImage:
    fig = _figure(10, 7.5)
    ax_mean, ax_max, ax_frac = fig.subplots(3, 1, sharex=True)
    frames = report["frames"]
    t = np.asarray(frames["source_t"])
    mean_u = np.asarray([[np.nan if v is None else v for v in row] for row in frames["mean_u"]],
                        dtype=np.float64).reshape(len(t), -1)
    axes_names = (report["job"].get("axes") or "")[1:]
    if len(axes_names) != mean_u.shape[1]:
        axes_names = default_axes(mean_u.shape[1])[1:]
    for a in range(mean_u.shape[1]):
        ax_mean.plot(t, mean_u[:, a], lw=1, label=f"u_{axes_names[a]}")
    ax_mean.axhline(0, color="#999999", lw=0.5)
    ax_mean.set_ylabel("mean u (px)")
    ax_mean.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax_max.plot(t, _series(frames["max_abs_u"]), color="k", lw=1.2, label="max |u| (length)")
    per_axis = np.asarray([[np.nan if v is None else v for v in row]
                           for row in frames["max_abs_u_axis"]], dtype=np.float64).reshape(len(t), -1)
    maxshift = report["job"].get("maxshift")
    for a in range(per_axis.shape[1]):
        line, = ax_max.plot(t, per_axis[:, a], lw=0.8, label=f"max |u_{axes_names[a]}|")
        if maxshift is not None:
            ax_max.axhline(maxshift[a] - 0.5, color=line.get_color(), ls="--", lw=1,
                           label=f"limit {axes_names[a]}: maxshift - 0.5 = {maxshift[a] - 0.5:g}")
    ax_max.set_ylabel("largest displacement (px)")
    ax_max.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    n_nodes = int(np.prod(report["job"]["gridsize"]))
    ax_frac.plot(t, np.asarray(frames["nodes_at_bound"], dtype=np.float64) / n_nodes,
                 color="red", lw=1, label="nodes at maxshift bound")
    ax_frac.plot(t, _series(frames["fold_fraction"]), color="purple", lw=1,
                 label="folded fraction (det <= 0)")
    ax_frac.set_ylim(-0.02, 1.02)
    ax_frac.set_ylabel("fraction")
    ax_frac.set_xlabel("source frame")
    ax_frac.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    caption = ("Time courses over every frame. Top: the mean displacement of the nodes per axis "
               "(the rigid part of the motion; slow drift and sudden jumps show here). Middle: "
               "the largest node displacement (vector length, and per axis); a per-axis curve "
               "touching its dashed line of the same colour hit the search limit. Bottom: the fraction of nodes at the maxshift bound and of the grid that "
               "folds; both should stay at 0.")
    return FigureImage("Displacement over time", caption, _png(fig))


def correlation(report, images) -> FigureImage:
    fig = _figure(10, 3.8)
    ax = fig.subplots()
    sampled = report["sampled"]
    t = np.asarray(report["frames"]["source_t"])[np.asarray(sampled["position"], dtype=int)] \
        if sampled["position"] else np.zeros(0)
    before = _series(sampled["correlation_before"])
    after = _series(sampled["correlation_after"])
    marker = "o" if len(t) <= 60 else None
    ax.plot(t, before, color=_BEFORE, lw=1, marker=marker, ms=3, label="before")
    ax.plot(t, after, color=_AFTER, lw=1, marker=marker, ms=3, label="after")
    ax.set_xlabel("source frame")
    ax.set_ylabel("correlation with fixed")
    ax.legend(fontsize=8, loc="lower right")
    s = report["summary"]
    caption = (f"Pearson correlation of each sampled frame with the fixed image, before and after "
               f"registration, on the pixels valid in both (median {_num(s['correlation_before_median'])}"
               f" before, {_num(s['correlation_after_median'])} after). After should sit above "
               "before for every frame; dips mark frames registration could not fix.")
    return FigureImage("Correlation with the fixed image", caption, _png(fig))


def mismatch(report, images) -> FigureImage:
    fig = _figure(10, 3.2)
    ax = fig.subplots()
    t = np.asarray(report["frames"]["source_t"])
    ax.plot(t, _series(report["frames"]["mismatch"]), color="k", lw=1)
    ax.set_xlabel("source frame")
    ax.set_ylabel("mismatch (penalty)")
    caption = ("The optimiser's penalty at the solution, per frame (the monitored 'mismatch': data "
               "mismatch plus regularisation). Its level depends on the data; look for frames "
               "that stand out from their neighbours.")
    return FigureImage("Mismatch over time", caption, _png(fig))


def _num(value, digits=3):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def make_figures(report, images) -> dict[str, FigureImage]:
    """Every picture the report can show, in page order (those without data are left out).

    Parameters
    ----------
    report : dict
        From :func:`blockreg.qc.compute_report`.
    images : dict
        :attr:`blockreg.qc.report.Analysis.images`.

    Returns
    -------
    dict of str -> FigureImage
        Keys ``mean_images``, ``worst_frame``, ``deformation_grid``, ``displacement``,
        ``correlation``, ``mismatch``.
    """
    out = {}
    if "mean_after" in images or "mean_before" in images:
        out["mean_images"] = mean_images(report, images)
    if report.get("worst_frame") is not None:
        out["worst_frame"] = worst_frame(report, images)
    if "grid_u" in images and len(images["nodes"]) >= 2:
        out["deformation_grid"] = deformation_grid(report, images)
    out["displacement"] = displacement(report, images)
    if report["sampled"]["position"]:
        out["correlation"] = correlation(report, images)
    if report["frames"].get("mismatch") is not None:
        out["mismatch"] = mismatch(report, images)
    return out
