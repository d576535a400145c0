"""The Zarr output store of a registration job (layout: docs/internals.md, "Zarr output store").

One Zarr v3 group per job.  Every monitored variable is an array with time on axis 0 and one frame
per chunk, so concurrent writers (pool processes, Celery workers) never touch the same chunk and
re-running a frame rewrites the same bytes.  Floating-point arrays are filled with NaN, so a frame
that was never written reads as missing.  The preprocessed fixed image is stored once as ``fixed``.

Storage is kept apart from the algorithms: this module imports nothing from :mod:`blockreg.reg`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ParameterError
from .io.base import default_axes

STORE_FORMAT_VERSION = 1
_IMAGE_NAMES = ("warped", "warped0")


def jsonable(value, nonfinite=str):
    """Copy of ``value`` in plain JSON types: NumPy scalars and arrays, tuples become lists.

    JSON has no NaN or Inf: a non-finite float becomes ``nonfinite(value)``; the default keeps the
    information as a string (``"nan"``, ``"inf"``) rather than failing the job.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, nonfinite) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), nonfinite)
    if isinstance(value, np.generic):
        # through the float check below: np.float64("nan").item() is a non-finite float
        return jsonable(value.item(), nonfinite)
    if isinstance(value, float) and not np.isfinite(value):
        return nonfinite(value)
    return value


def store_attributes(spec, frames, *, nodes=None, axes=None, spacing=None, **extra) -> dict:
    """The ``"blockreg"`` attributes of a results store, for :func:`create_store`'s ``attrs``.

    The one place that builds them, for the in-process runner and for jobs (CLI and service).

    Parameters
    ----------
    spec : dict
        The job spec (``JobSpec.to_json()``) or the algorithm's ``describe()``.
    frames : sequence of int
        Source time index of each position along the output's time axis.
    nodes : tuple of 1-D arrays, optional
        The deformation grid's node positions.
    axes : str, optional
        Axis names, time first (e.g. ``"tyx"``).
    spacing : sequence of float, optional
        Pixel spacing per spatial axis.
    **extra
        Further attributes (``fixed_index``, ``roi``).

    Returns
    -------
    dict
        JSON-able once :func:`create_store` has converted NumPy values.
    """
    meta = {"spec": spec, "frames": [int(t) for t in frames]}
    if nodes is not None:
        meta["nodes"] = [np.asarray(n, dtype=float).tolist() for n in nodes]
    meta["axes"] = axes
    meta["spacing"] = None if spacing is None else [float(s) for s in spacing]
    meta.update(extra)
    return meta


def _fill_value(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan
    return 0


def _is_zarr_group(path: Path) -> bool:
    return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()


def create_store(path, nframes, decls, *, attrs=None, fixed=None, overwrite=False,
                 spatial_axes=None):
    """Create the output group with every monitored array pre-declared.

    Parameters
    ----------
    path : str or os.PathLike
        Directory of the new Zarr v3 group.
    nframes : int
        Length of the time axis (number of frames that will be written).
    decls : dict of str -> ArrayDecl
        Monitored variables and their per-frame shape/dtype (anything with ``.shape``/``.dtype``).
    attrs : dict, optional
        Stored under the group attribute ``"blockreg"`` (``spec``, ``nodes``, ``axes``, ``spacing``,
        ``frames``, ``fixed_index``); ``version`` is added.  Must be JSON-able after NumPy values
        are converted.
    fixed : ndarray, optional
        The preprocessed fixed image, stored once (float32) as the array ``fixed``.
    overwrite : bool
        Replace an existing Zarr group at ``path``.  Without it an existing path is refused; a path
        that exists but is not a Zarr group is refused even with it (never delete foreign data).
    spatial_axes : str or sequence of str, optional
        Names of the image axes (e.g. ``"zyx"``), used for ``dimension_names`` of image arrays.
        Default: those of :func:`blockreg.io.base.default_axes`.

    Returns
    -------
    zarr.Group
        The group, open for writing.
    """
    import zarr

    from . import __version__

    path = Path(os.fspath(path))
    nframes = int(nframes)
    if nframes < 1:
        raise ParameterError("nframes", f"must be at least 1, got {nframes}")
    if path.exists():
        if not overwrite:
            raise ParameterError("out", f"{path} already exists (pass overwrite=True to replace it)")
        if not _is_zarr_group(path):
            raise ParameterError("out", f"{path} exists and is not a Zarr group; refusing to replace it")

    image_shape = None if fixed is None else tuple(np.shape(fixed))
    if spatial_axes is None and image_shape is not None and len(image_shape) <= 3:
        spatial_axes = default_axes(len(image_shape))[1:]
    spatial_axes = None if spatial_axes is None else tuple(spatial_axes)

    def image_dims(shape):
        # an image-shaped array gets axis names so napari/OME readers label it correctly
        if spatial_axes is None or len(shape) != len(spatial_axes):
            return None
        return spatial_axes

    group = zarr.open_group(str(path), mode="w" if overwrite else "w-", zarr_format=3)
    for name, decl in decls.items():
        shape = tuple(int(n) for n in decl.shape)
        dtype = np.dtype(decl.dtype)
        dims = None
        if name in _IMAGE_NAMES or (image_shape is not None and shape == image_shape):
            dims = image_dims(shape)
            dtype = np.dtype(np.float32)
        group.create_array(
            name,
            shape=(nframes,) + shape,
            chunks=(1,) + shape,
            dtype=dtype,
            fill_value=_fill_value(dtype),
            dimension_names=None if dims is None else ("t",) + dims,
        )
    if fixed is not None:
        fixed = np.asarray(fixed, dtype=np.float32)
        arr = group.create_array(
            "fixed",
            shape=fixed.shape,
            chunks=fixed.shape,
            dtype=np.float32,
            fill_value=np.nan,
            dimension_names=image_dims(fixed.shape),
        )
        arr[...] = fixed
    meta = {"version": __version__, "store_format": STORE_FORMAT_VERSION}
    meta.update(jsonable(dict(attrs or {})))
    group.attrs["blockreg"] = meta
    return group


def open_store(path, mode="r"):
    """Open an existing output group.

    Parameters
    ----------
    path : str or os.PathLike
        The store directory.
    mode : {"r", "r+"}
        Read-only or read-write (never creates or truncates).

    Returns
    -------
    zarr.Group
    """
    import zarr

    if mode not in ("r", "r+"):
        raise ParameterError("mode", f"must be 'r' or 'r+', got {mode!r}")
    path = Path(os.fspath(path))
    if not path.exists():
        raise ParameterError("path", f"{path} does not exist")
    group = zarr.open_group(str(path), mode=mode)
    if "blockreg" not in group.attrs:
        raise ParameterError("path", f"{path} is a Zarr group but not a blockreg results store")
    return group


def write_frame(group, index, results):
    """Write one frame's results into row ``index`` of each monitored array.

    Each array has one chunk per frame, so this writes whole chunks: repeating it writes the
    same bytes, and different frames can be written concurrently from different processes.

    Parameters
    ----------
    group : zarr.Group
        Open for writing.
    index : int
        Position along axis 0 (not the source time index; see the ``frames`` attribute).
    results : dict of str -> ndarray or float
        Values to write; every name must be an array of the group.
    """
    index = int(index)
    for name, value in results.items():
        if name not in group:
            raise ParameterError("results", f"{name!r} is not an array of this store")
        arr = group[name]
        if not 0 <= index < arr.shape[0]:
            raise ParameterError("index", f"{index} outside the store's {arr.shape[0]} frames")
        value = np.asarray(value, dtype=arr.dtype)
        if value.shape != arr.shape[1:]:
            raise ParameterError(
                "results", f"{name!r} has shape {value.shape}, the store expects {arr.shape[1:]}"
            )
        arr[index] = value


def open_results(path):
    """Open a results store read-only (public: ``blockreg.open_results``).

    Returns
    -------
    zarr.Group
        Arrays are the monitored variables (time on axis 0) plus ``fixed``; the group attribute
        ``"blockreg"`` holds the parameters, nodes, axes, spacing and source frame indices.
    """
    return open_store(path, "r")


def read_results(path) -> dict:
    """Read every array of a results store into memory.

    Returns
    -------
    dict of str -> numpy.ndarray
    """
    group = open_store(path, "r")
    return {name: np.asarray(arr[...]) for name, arr in group.arrays()}
