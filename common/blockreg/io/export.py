"""Exports of a registration's results for other programs (layouts: docs/formats.md, "Exports").

- The registered movie to (Big)TIFF with OME-XML (axes ``TYX``/``TZYX``, ``PhysicalSize*`` in µm,
  ``TimeIncrement`` in s), which Fiji, napari and tifffile open; or to Imagine (``.imagine`` header
  + raw ``.cam``), the format of the original BlockRegistration's examples.
- The deformations to an NPZ file (:func:`write_deformation_npz`).

The writers take arrays or iterables of frames and write one frame at a time, so a movie larger
than memory streams from the results store to the file.  :func:`export_results` reads a store
opened with :func:`blockreg.store.open_results`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .base import default_axes
from .imagine import write_header

__all__ = ["export_results", "write_tiff", "write_imagine", "write_deformation_npz",
           "convert_frame", "NPZ_LAYOUT_VERSION"]

NPZ_LAYOUT_VERSION = 1
_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
# classic TIFF addresses 4 GiB; leave room for the IFDs and OME-XML of a long movie
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25


def convert_frame(frame, dtype) -> np.ndarray:
    """``frame`` as ``dtype``: integers are rounded and clipped to the type's range, NaN -> 0.

    Parameters
    ----------
    frame : array_like
    dtype : numpy.dtype-like
        An integer or floating-point type.

    Returns
    -------
    numpy.ndarray
    """
    dtype = np.dtype(dtype)
    frame = np.asarray(frame)
    if dtype.kind in "ui" and frame.dtype.kind == "f":
        info = np.iinfo(dtype)
        rounded = np.rint(np.nan_to_num(frame, nan=0.0))
        return np.clip(rounded, info.min, info.max).astype(dtype)
    return frame.astype(dtype, copy=False)


def _check_movie(shape, dtype, axes):
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (3, 4):
        raise ParameterError("shape", f"a movie is (T, Y, X) or (T, Z, Y, X), got {shape}")
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        raise ParameterError("dtype", f"must be an integer or floating-point type, got {dtype}")
    axes = (axes or default_axes(len(shape) - 1)).lower()
    if len(axes) != len(shape) or axes[0] != "t":
        raise ParameterError("axes", f"{axes!r} does not name the {len(shape)} axes of {shape}")
    return shape, dtype, axes


def write_tiff(path, frames, *, shape, dtype, axes=None, spacing=None, time_step_s=None,
               bigtiff=None) -> Path:
    """Write a movie to an OME-TIFF, frame by frame.

    Parameters
    ----------
    path : str or os.PathLike
    frames : iterable of ndarray
        ``shape[0]`` frames of shape ``shape[1:]`` (any dtype; converted with
        :func:`convert_frame`).  An ndarray of the whole movie works too.
    shape : tuple of int
        ``(T, Y, X)`` or ``(T, Z, Y, X)``.
    dtype : numpy.dtype-like
        Pixel type written.
    axes : str, optional
        Lower-case axis names (default ``"tyx"``/``"tzyx"``).
    spacing : sequence of float, optional
        µm per spatial axis.
    time_step_s : float, optional
    bigtiff : bool, optional
        Default: BigTIFF when the pixels approach classic TIFF's 4 GiB limit.

    Returns
    -------
    pathlib.Path
    """
    import tifffile

    shape, dtype, axes = _check_movie(shape, dtype, axes)
    path = Path(os.fspath(path))
    if bigtiff is None:
        bigtiff = int(np.prod(shape)) * dtype.itemsize > _CLASSIC_TIFF_LIMIT
    metadata = {"axes": axes.upper()}
    if spacing is not None:
        for axis, value in zip(axes[1:], spacing):
            metadata[f"PhysicalSize{axis.upper()}"] = float(value)
            metadata[f"PhysicalSize{axis.upper()}Unit"] = "µm"
    if time_step_s is not None:
        metadata["TimeIncrement"] = float(time_step_s)
        metadata["TimeIncrementUnit"] = "s"
    frame_shape = shape[1:]

    def planes():
        count = 0
        for frame in frames:
            frame = convert_frame(frame, dtype)
            if frame.shape != frame_shape:
                raise ParameterError("frames", f"frame {count} has shape {frame.shape}, "
                                     f"expected {frame_shape}")
            count += 1
            yield from frame.reshape((-1,) + frame_shape[-2:])
        if count != shape[0]:
            raise ParameterError("frames", f"got {count} frames, expected {shape[0]}")

    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=True) as tif:
        tif.write(planes(), shape=shape, dtype=dtype, photometric="minisblack",
                  metadata=metadata)
    return path


def write_imagine(path, frames, *, shape, dtype, spacing=None, time_step_s=None,
                  comment="registered with blockreg") -> tuple[Path, Path]:
    """Write a movie as an Imagine recording: ``<stem>.imagine`` header + ``<stem>.cam`` pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The header or the ``.cam`` path (the other takes the same stem).
    frames : iterable of ndarray
        ``shape[0]`` frames of shape ``shape[1:]``, converted with :func:`convert_frame`.
    shape, dtype, spacing, time_step_s
        As for :func:`write_tiff` (spacing in µm per ``(z,) y, x``).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The header and the ``.cam``.
    """
    shape, dtype, axes = _check_movie(shape, dtype, None)
    path = Path(os.fspath(path))
    header, cam = path.with_suffix(".imagine"), path.with_suffix(".cam")
    count = 0
    with open(cam, "wb") as out:
        for frame in frames:
            frame = convert_frame(frame, dtype)
            if frame.shape != shape[1:]:
                raise ParameterError("frames", f"frame {count} has shape {frame.shape}, "
                                     f"expected {shape[1:]}")
            out.write(np.ascontiguousarray(frame).tobytes())
            count += 1
    if count != shape[0]:
        raise ParameterError("frames", f"got {count} frames, expected {shape[0]}")
    write_header(header, shape=shape, dtype=dtype, spacing=spacing, time_step_s=time_step_s,
                 cam_name=cam.name, comment=comment)
    return header, cam


def write_deformation_npz(path, u, nodes, *, axes, spacing=None, frames=None,
                          fixed_index=None) -> Path:
    """Write deformations to the documented NPZ layout (docs/formats.md, "Deformation NPZ").

    Arrays in the file:

    - ``u``: float, ``(T, *gridsize, N)``: the displacement in pixels at each grid node;
      component ``i`` is along spatial axis ``i`` (``axes[1 + i]``); ``phi(x) = x + u(x)`` maps
      the fixed image's pixel ``x`` into the moving frame;
    - ``nodes_<axis>`` (e.g. ``nodes_y``, ``nodes_x``): the 0-based pixel positions of the nodes;
    - ``axes``: the axis names, time first (``"tyx"``);
    - ``spacing``: µm per spatial axis (NaN where unknown), to turn pixels into µm;
    - ``frames``: the source time index of each row of ``u``; ``fixed_index`` (-1 if unknown);
    - ``layout_version``: 1.

    Returns
    -------
    pathlib.Path
    """
    u = np.asarray(u)
    axes = str(axes).lower()
    spatial = axes[1:]
    nodes = [np.asarray(n, dtype=float) for n in nodes]
    if u.ndim != len(spatial) + 2 or u.shape[-1] != len(spatial):
        raise ParameterError("u", f"shape {u.shape} is not (T, *gridsize, {len(spatial)})")
    if len(nodes) != len(spatial) or tuple(len(n) for n in nodes) != u.shape[1:-1]:
        raise ParameterError("nodes", f"{[len(n) for n in nodes]} nodes per axis do not match "
                             f"the grid {u.shape[1:-1]}")
    frames = np.arange(u.shape[0]) if frames is None else np.asarray(frames, dtype=np.int64)
    spacing = (np.full(len(spatial), np.nan) if spacing is None
               else np.asarray(spacing, dtype=float))
    arrays = {"u": u, "axes": np.array(axes), "spacing": spacing, "frames": frames,
              "fixed_index": np.int64(-1 if fixed_index is None else fixed_index),
              "layout_version": np.int64(NPZ_LAYOUT_VERSION)}
    arrays.update({f"nodes_{a}": n for a, n in zip(spatial, nodes)})
    path = Path(os.fspath(path))
    with open(path, "wb") as out:  # np.savez would append ".npz" to another suffix
        np.savez(out, **arrays)
    return path


def _format(out_path: Path, what: str, fmt):
    if fmt is None:
        suffix = out_path.suffix.lower()
        if what == "deformation":
            fmt = "npz"
        elif suffix in _TIFF_SUFFIXES:
            fmt = "bigtiff" if suffix == ".btf" else "tiff"
        elif suffix in (".imagine", ".cam"):
            fmt = "imagine"
        else:
            raise ParameterError("out", f"cannot tell the format from {out_path.name!r}; use "
                                 ".tif/.btf or .imagine, or give fmt")
    allowed = {"movie": ("tiff", "bigtiff", "imagine"), "deformation": ("npz",)}
    if what not in allowed:
        raise ParameterError("what", f"must be 'movie' or 'deformation', got {what!r}")
    if fmt not in allowed[what]:
        raise ParameterError("fmt", f"a {what} exports to {list(allowed[what])}, not {fmt!r}")
    return fmt


def _image_array(group, name, store_path):
    """The array ``name`` of a results store, or level 0 when it is an OME-Zarr image group."""
    import zarr

    from . import ngff

    if name not in group:
        raise ParameterError("what", f"{store_path} has no {name!r} array (the job did not "
                             f"monitor it)")
    node = group[name]
    if isinstance(node, zarr.Group):
        meta = ngff.describe(node.attrs, None)
        if meta is None:
            raise ParameterError("what", f"{name!r} in {store_path} is not an image")
        node = node[meta.array_path]
    return node


def _refuse_existing(paths) -> None:
    """An export never replaces a file: OUT may name the raw recording (its ``.cam``) itself."""
    for path in paths:
        if os.path.lexists(path):
            raise ParameterError("out", f"{path} exists; choose another name or remove it first")


def export_results(store_path, out_path, *, what="movie", fmt=None, dtype=None) -> list[Path]:
    """Export a results store's registered movie or deformations.

    Parameters
    ----------
    store_path : str or os.PathLike
        A results store (opened read-only with :func:`blockreg.store.open_results`).
    out_path : str or os.PathLike
        The file to write; for Imagine, the ``.imagine`` header (the ``.cam`` goes beside it).
    what : {"movie", "deformation"}
        The registered movie (the store's ``warped`` array) or the deformations (``u``).
    fmt : {"tiff", "bigtiff", "imagine", "npz"}, optional
        Default from ``out_path``'s suffix (``.tif``/``.tiff`` TIFF, BigTIFF when large; ``.btf``
        BigTIFF; ``.imagine``; deformations are always NPZ).
    dtype : numpy.dtype-like, optional
        Pixel type of a movie: default the store's (float32); an integer type rounds and clips,
        and frames never computed (NaN) become 0.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    blockreg.errors.ParameterError
        Field ``what``, ``fmt``, ``dtype`` or ``out``: a bad choice, a store without the array, or
        a file to write that exists already (an export never replaces one).
    """
    from ..store import open_results

    out_path = Path(os.fspath(out_path))
    fmt = _format(out_path, what, fmt)
    group = open_results(store_path)
    meta = dict(group.attrs["blockreg"])
    axes = meta.get("axes")
    spacing = meta.get("spacing")
    if what == "deformation":
        u = _image_array(group, "u", store_path)
        nodes = meta.get("nodes")
        if nodes is None:
            raise ParameterError("what", f"{store_path} records no grid nodes")
        axes = axes or default_axes(len(nodes))
        _refuse_existing([out_path])
        return [write_deformation_npz(out_path, u[...], nodes, axes=axes, spacing=spacing,
                                      frames=meta.get("frames"),
                                      fixed_index=meta.get("fixed_index"))]
    movie = _image_array(group, "warped", store_path)
    try:
        dtype = np.dtype(dtype if dtype is not None else movie.dtype)
    except TypeError:
        raise ParameterError("dtype", f"{dtype!r} is not a NumPy type") from None
    if dtype.kind not in "uif":
        raise ParameterError("dtype", f"must be an integer or floating-point type, got {dtype}")
    shape = tuple(movie.shape)
    axes = axes if axes and len(axes) == len(shape) else None
    if spacing is not None and len(spacing) != len(shape) - 1:
        spacing = None
    step = meta.get("time_step_s")
    _refuse_existing([out_path.with_suffix(".imagine"), out_path.with_suffix(".cam")]
                     if fmt == "imagine" else [out_path])
    frames = (movie[t] for t in range(shape[0]))
    if fmt == "imagine":
        return list(write_imagine(out_path, frames, shape=shape, dtype=dtype, spacing=spacing,
                                  time_step_s=step))
    return [write_tiff(out_path, frames, shape=shape, dtype=dtype, axes=axes, spacing=spacing,
                       time_step_s=step, bigtiff=True if fmt == "bigtiff" else None)]
