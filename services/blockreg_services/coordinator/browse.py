"""``/api/v1`` routes for looking at data: the server-side file picker, the preview of a fixed
frame with its aperture grid, and pictures of a job's frames.

The dashboard uses these, but they are ordinary API routes (in the OpenAPI document, built from
:mod:`.schemas`): a script can list the data roots or fetch a thumbnail the same way.

Paths are confined to the server's data roots (``data_roots`` / ``allowed_roots`` setting; when it
is unset, the ``data_dir``): a path outside them is a 403 naming ``path``, never a listing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from blockreg.errors import ParameterError

from . import images, schemas
from .api import ApiError, _get_job, data_roots as configured_roots

bp = Blueprint("browse", __name__, url_prefix="/api/v1")


def guard_like_api():
    """Run the ``api`` blueprint's request checks (e.g. authentication) on these routes too, so
    every route under ``/api/v1`` is guarded alike whichever blueprint serves it."""
    for check in current_app.before_request_funcs.get("api", ()):
        answer = check()
        if answer is not None:
            return answer
    return None


bp.before_request(guard_like_api)

MAX_ENTRIES = 500
# files worth opening with blockreg.io.open_series to show their shape (others are listed plainly)
SERIES_SUFFIXES = (".tif", ".tiff", ".btf", ".npy", ".h5", ".hdf5", ".nwb", ".imagine", ".cam")
SERIES_DIR_SUFFIXES = (".zarr",)


def data_roots() -> list[Path]:
    """The folders the picker may show: the configured roots, else the data folder."""
    roots = configured_roots()
    if not roots:
        roots = [current_app.config["DATA_DIR"]]
    return [Path(r).expanduser().resolve() for r in roots]


def _inside_roots(path: Path, roots: list[Path]) -> bool:
    from blockreg.paths import inside

    return inside(path, roots)


def _resolve(raw: str, field: str = "path") -> Path:
    try:
        path = Path(raw).expanduser()
        absolute = path.is_absolute()
        # realpath, not resolve(): a link loop must not answer differently from other outside paths
        path = Path(os.path.realpath(path))
    except (ValueError, OSError, RuntimeError) as exc:  # a NUL byte, '~nosuchuser', ...
        raise ApiError(400, "invalid path", [{"field": field, "problem": str(exc)}]) from None
    if not absolute:
        raise ApiError(400, "path must be absolute", [{"field": field, "problem": "must be absolute"}])
    if not _inside_roots(path, data_roots()):
        raise ApiError(403, "path outside the data roots",
                       [{"field": field, "problem": f"{raw} is outside the server's data roots"}])
    return path


def _series_info(path: Path) -> dict:
    """Shape, axes, spacing and dtype of a series, or the reader's complaint."""
    from blockreg.io import open_series

    try:
        with open_series(path) as series:
            return {"shape": [int(n) for n in series.shape], "axes": series.axes,
                    "dtype": str(series.dtype),
                    "spacing": None if series.spacing is None else [float(s) for s in series.spacing]}
    except (ParameterError, OSError, ValueError) as exc:
        return {"error": getattr(exc, "problem", str(exc))}


def _entry(path: Path) -> dict:
    name = path.name
    lower = name.lower()
    if path.is_dir() and not lower.endswith(SERIES_DIR_SUFFIXES):
        return {"name": name, "path": str(path), "kind": "directory"}
    if lower.endswith(SERIES_SUFFIXES + SERIES_DIR_SUFFIXES):
        return {"name": name, "path": str(path), "kind": "series", **_series_info(path)}
    return {"name": name, "path": str(path), "kind": "file"}


@bp.get("/files")
def list_files():
    """A folder's sub-folders and files (series with their shape), or the roots without ``path``."""
    roots = data_roots()
    raw = request.args.get("path")
    if not raw:
        entries = [{"name": str(r), "path": str(r), "kind": "directory"} for r in roots]
        return jsonify(schemas.body(schemas.FileListing, path=None, parent=None,
                                    roots=[str(r) for r in roots], entries=entries))
    path = _resolve(raw)
    if not path.is_dir():
        raise ApiError(404, f"{raw} is not a folder", [{"field": "path", "problem": "not a folder"}])
    try:
        children = sorted(path.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
    except OSError as exc:
        raise ApiError(403, f"{raw} cannot be read", [{"field": "path",
                                                       "problem": exc.strerror or str(exc)}]) from None
    # hidden entries are left out, and so are links leading out of the roots (never opened)
    # or nowhere (a loop)
    children = [c for c in children if not c.name.startswith(".")
                and _shown(c, roots)][:MAX_ENTRIES]
    parent = path.parent if path not in roots and _inside_roots(path.parent, roots) else None
    return jsonify(schemas.body(schemas.FileListing, path=str(path),
                                parent=None if parent is None else str(parent),
                                roots=[str(r) for r in roots], entries=[_entry(c) for c in children]))


def _shown(child: Path, roots: list[Path]) -> bool:
    """Whether a folder's entry is listed: it resolves, and inside the roots."""
    try:
        return _inside_roots(child.resolve(), roots)
    except (OSError, RuntimeError):  # a link loop
        return False


def _int_list(name: str, default=None) -> list[int] | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return [int(v) for v in raw.split(",")]
    except ValueError:
        raise ApiError(422, f"invalid {name}", [{"field": name, "problem":
                       f"must be integers separated by commas, got {raw!r}"}]) from None


@bp.get("/preview")
def preview():
    """The fixed frame of a would-be job with its aperture grid and maxshift (JSON + PNG data URL).

    Query: ``path`` (required), ``dataset``, ``channel``, ``fixed_index``; ``gridsize`` and
    ``maxshift`` as comma-separated integers, ``overlap`` one integer. The whole frame is shown
    (no ROI): the grid is laid over the full image.
    """
    from blockreg.io import open_series
    from blockreg.reg.apertures import default_aperture_width
    from blockreg.reg.deformation import nodes_for_shape

    raw = request.args.get("path")
    if not raw:
        raise ApiError(422, "path is required", [{"field": "input.path", "problem": "required"}])
    path = _resolve(raw, "input.path")
    from blockreg.paths import leads_out

    # a Zarr store's chunks or an Imagine header's .cam must not be links out of the roots
    if leads_out(path, data_roots()):
        raise ApiError(403, "path outside the data roots", [{"field": "input.path", "problem":
                       f"{raw}: a file it is read with lies outside the server's data roots"}])
    channel = _int_list("channel")
    try:
        series = open_series(path, dataset=request.args.get("dataset") or None,
                             channel=channel[0] if channel else None)
    except ParameterError as exc:
        raise ApiError(422, "cannot read the input", [{"field": exc.field, "problem": exc.problem}])
    with series:
        n_time, shape = int(series.shape[0]), tuple(int(n) for n in series.shape[1:])
        fixed_index = (_int_list("fixed_index") or [n_time // 2])[0]
        if not 0 <= fixed_index < n_time:
            raise ApiError(422, "fixed_index out of range", [{"field": "fixed_index", "problem":
                           f"must be in 0..{n_time - 1}"}])
        try:
            frame = np.asarray(series.frame(fixed_index), dtype=np.float32)
        except (OSError, ValueError) as exc:  # a damaged or truncated file
            raise ApiError(422, "cannot read the input", [{"field": "input.path", "problem":
                           getattr(exc, "problem", str(exc))}]) from None
        axes = series.axes
    gridsize = _int_list("gridsize")
    maxshift = _int_list("maxshift")
    overlap = (_int_list("overlap") or [0])[0]
    body = {"shape": list(shape), "axes": axes, "fixed_index": fixed_index, "frames": n_time,
            "image": images.png_data_url(images.plane(frame)), "nodes": None,
            "aperture_width": None, "maxshift": maxshift}
    if gridsize is not None:
        try:
            nodes = nodes_for_shape(shape, gridsize)
            width = default_aperture_width(shape, gridsize, overlap)
        except ParameterError as exc:
            raise ApiError(422, "invalid grid", [{"field": f"params.{exc.field}",
                                                  "problem": exc.problem}]) from None
        body.update(nodes=[[float(v) for v in n] for n in nodes], aperture_width=list(width))
    if maxshift is not None and len(maxshift) != len(shape):
        raise ApiError(422, "invalid maxshift", [{"field": "params.maxshift", "problem":
                       f"has {len(maxshift)} entries but the image has {len(shape)} axes"}])
    return jsonify(schemas.body(schemas.Preview, body))


# -- a job's frames ------------------------------------------------------------------------------
def _job_store(job_id: int):
    """(job row, opened store, its blockreg attributes) or a 404/409."""
    from blockreg.store import open_results

    job = _get_job(job_id)
    try:
        group = open_results(job.output_path)
    except (ParameterError, OSError, FileNotFoundError) as exc:
        raise ApiError(409, f"job {job_id} has no readable output: {exc}") from None
    return job, group, dict(group.attrs["blockreg"])


def _frame_position(attrs: dict, index: int) -> int:
    frames = attrs.get("frames") or []
    if not 0 <= index < len(frames):
        raise ApiError(404, f"frame {index} not found",
                       [{"field": "index", "problem": f"must be in 0..{len(frames) - 1}"}])
    return int(frames[index])


def _raw_frame(job, attrs: dict, source_t: int) -> np.ndarray:
    from blockreg.jobs import plan_job, read_frame

    try:
        plan = plan_job(job.spec)
    except (ParameterError, OSError, ValueError) as exc:
        raise ApiError(409, f"the job's input cannot be read: {exc}") from None
    return np.asarray(read_frame(plan, source_t), dtype=np.float32)


def _stored_u(group, index: int):
    from blockreg.qc.storage import store_member

    stored = store_member(group, "u")
    if stored is None:
        return None
    u = np.asarray(stored[index], dtype=np.float64)
    return None if not np.isfinite(u).all() else u


@bp.get("/jobs/<int:job_id>/frames/<int:index>/image")
def frame_image(job_id: int, index: int):
    """PNG of output frame ``index``: ``which=raw`` (the input, cropped) or ``registered``."""
    from blockreg.apply import warp_frame

    which = request.args.get("which", "raw")
    if which not in ("raw", "registered", "fixed"):
        raise ApiError(400, "unknown picture", [{"field": "which",
                                                  "problem": "must be raw, registered or fixed"}])
    job, group, attrs = _job_store(job_id)
    source_t = _frame_position(attrs, index)
    if which == "fixed":
        source_t = int(attrs.get("fixed_index", source_t))
    raw = _raw_frame(job, attrs, source_t)
    limits = images.display_limits(images.plane(raw))
    picture = raw
    if which == "registered":
        from blockreg.qc.storage import store_member

        warped0 = store_member(group, "warped0")  # an array, or an OME-Zarr image group's level 0
        stored = None if warped0 is None else np.asarray(warped0[index], dtype=np.float32)
        if stored is not None and np.isfinite(stored).any():
            picture = stored
        else:
            u = _stored_u(group, index)
            if u is None:
                raise ApiError(409, f"frame {index} has no stored deformation yet")
            nodes = tuple(np.asarray(n, dtype=float) for n in attrs["nodes"])
            picture = warp_frame(raw, u, nodes)
    response = Response(images.to_png(images.plane(picture), limits), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


@bp.get("/jobs/<int:job_id>/frames/<int:index>/deformation")
def frame_deformation(job_id: int, index: int):
    """The node positions and displacements of output frame ``index`` (null until computed)."""
    _job, group, attrs = _job_store(job_id)
    source_t = _frame_position(attrs, index)
    u = _stored_u(group, index)
    nodes = attrs.get("nodes")
    roi = attrs.get("roi") or []
    shape = [int(b) - int(a) for a, b in roi] if roi else None
    return jsonify(schemas.body(schemas.Deformation, index=index, source_t=source_t,
                                shape=shape, nodes=nodes,
                                u=None if u is None else u.tolist()))
