"""The Zarr output store of a registration job (layout: docs/internals.md, "Zarr output store").

One Zarr v3 group per job.  Every monitored variable is an array with time on axis 0, stored in
shards of ``shard_frames`` frames (one file per shard; inside an image's shard one chunk per
frame, so a viewer reads one frame without the rest).  The shard is the unit of concurrent
writing: no two processes ever write the same shard at once (the dispatcher sends one task per
shard; the in-process runner writes from its main process), so no update is lost.  Floating-point arrays are filled with NaN, so
a frame that was never written reads as missing.

Images (the preprocessed ``fixed`` image, ``warped``, ``warped0``, any image-shaped variable) are
OME-Zarr 0.5 images: a group ``<name>/`` with the OME-NGFF ``multiscales`` attributes and its one
level, the array ``<name>/0``.  :func:`member` returns the array behind either kind of name.

Storage is kept apart from the algorithms: this module imports nothing from :mod:`blockreg.reg`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ParameterError
from .io.base import default_axes
from .store_ngff import image_attributes, shard_frames, to_output_dtype

STORE_FORMAT_VERSION = 2  # 2: sharded arrays, images as OME-Zarr 0.5 groups
_IMAGE_NAMES = ("warped", "warped0")   # the registered movies: their type is output.dtype
IMAGE_LEVEL = "0"                      # the one resolution level of an image group


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


def store_attributes(spec, frames, *, nodes=None, axes=None, spacing=None, time_step_s=None,
                     **extra) -> dict:
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
        Voxel size in µm per spatial axis.
    time_step_s : float, optional
        Seconds between source frames.
    **extra
        Further attributes (``fixed_index``, ``roi``).

    Returns
    -------
    dict
        JSON-able once :func:`create_store` has converted NumPy values.  ``units`` names the unit
        of ``spacing`` and ``time_step_s`` (and of nodes and displacements: pixels).
    """
    meta = {"spec": spec, "frames": [int(t) for t in frames]}
    if nodes is not None:
        meta["nodes"] = [np.asarray(n, dtype=float).tolist() for n in nodes]
    meta["axes"] = axes
    meta["spacing"] = None if spacing is None else [float(s) for s in spacing]
    meta["time_step_s"] = None if time_step_s is None else float(time_step_s)
    meta["units"] = {"spacing": "micrometer", "time_step_s": "second", "nodes": "pixel",
                     "displacements": "pixel"}
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
                 spatial_axes=None, image_dtype=None, shard=None):
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
        ``time_step_s``, ``frames``, ``fixed_index``); ``version``, ``store_format`` and
        ``shard_frames`` are added.  Must be JSON-able after NumPy values are converted.
        ``spacing`` and ``time_step_s`` also become the images' OME-NGFF scale.
    fixed : ndarray, optional
        The preprocessed fixed image, stored once (float32) as the image ``fixed``.
    overwrite : bool
        Replace an existing Zarr group at ``path``.  Without it an existing path is refused; a path
        that exists but is not a Zarr group is refused even with it (never delete foreign data).
    spatial_axes : str or sequence of str, optional
        Names of the image axes (e.g. ``"zyx"``), the images' OME-NGFF axes.
        Default: those of :func:`blockreg.io.base.default_axes`.
    image_dtype : numpy.dtype-like, optional
        Pixel type of the registered movies ``warped`` and ``warped0`` (default float32); an
        integer type is written rounded and clipped (:func:`blockreg.store_ngff.to_output_dtype`).
    shard : int, optional
        Frames per shard (default :func:`blockreg.store_ngff.shard_frames` of ``nframes``).

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
    shard = shard_frames(nframes) if shard is None else int(shard)
    if shard < 1:
        raise ParameterError("shard", f"must be at least 1, got {shard}")
    if path.exists():
        if not overwrite:
            raise ParameterError("out", f"{path} already exists (pass overwrite=True to replace "
                                        "it)")
        if not _is_zarr_group(path):
            raise ParameterError("out", f"{path} exists and is not a Zarr group; refusing to "
                                        "replace it")
    owned = {"version": __version__, "store_format": STORE_FORMAT_VERSION, "shard_frames": shard}
    meta = dict(owned)
    meta.update(jsonable(dict(attrs or {})))
    # attributes copied from another store (an optimize job's source) must not describe this one
    meta.update(owned)

    image_shape = None if fixed is None else tuple(np.shape(fixed))
    if spatial_axes is None and image_shape is not None and len(image_shape) <= 3:
        spatial_axes = default_axes(len(image_shape))[1:]
    spatial_axes = None if spatial_axes is None else tuple(spatial_axes)

    def image_axes(shape):
        # an image-shaped array becomes an OME-Zarr image so viewers label its axes
        if spatial_axes is None or len(shape) != len(spatial_axes):
            return None
        return spatial_axes

    group = zarr.open_group(str(path), mode="w" if overwrite else "w-", zarr_format=3)
    for name, decl in decls.items():
        shape = tuple(int(n) for n in decl.shape)
        dtype = np.dtype(decl.dtype)
        dims = None
        if name in _IMAGE_NAMES or (image_shape is not None and shape == image_shape):
            dims = image_axes(shape)
            dtype = np.dtype(np.float32)
            if name in _IMAGE_NAMES and image_dtype is not None:
                dtype = np.dtype(image_dtype)
        where = group
        shards = (min(shard, nframes),) + shape
        # an image is read a frame at a time (viewers): one chunk per frame inside the shard;
        # the small per-frame arrays are read whole, so one chunk per shard is cheaper
        chunks = shards
        if dims is not None:
            where = _image_group(group, name, ("t",) + dims, meta)
            chunks = (1,) + shape
        where.create_array(
            IMAGE_LEVEL if dims is not None else name,
            shape=(nframes,) + shape,
            chunks=chunks,
            shards=shards,
            dtype=dtype,
            fill_value=_fill_value(dtype),
            dimension_names=None if dims is None else ("t",) + dims,
        )
    if fixed is not None:
        fixed = np.asarray(fixed, dtype=np.float32)
        dims = image_axes(fixed.shape)
        where = group if dims is None else _image_group(group, "fixed", dims, meta)
        arr = where.create_array(
            "fixed" if dims is None else IMAGE_LEVEL,
            shape=fixed.shape,
            chunks=fixed.shape,
            dtype=np.float32,
            fill_value=np.nan,
            dimension_names=dims,
        )
        arr[...] = fixed
    group.attrs["blockreg"] = meta
    return group


def _image_group(group, name, dims, meta):
    """A child group ``name`` carrying the OME-NGFF 0.5 metadata of an image with axes ``dims``."""
    sub = group.create_group(name)
    sub.attrs["ome"] = image_attributes(name, "".join(dims), spacing=meta.get("spacing"),
                                        time_step_s=meta.get("time_step_s"))
    return sub


def member(group, name):
    """The array ``name`` of a results group: a plain array, or level 0 of an image group.

    Returns
    -------
    zarr.Array or None
        None when the store has no such variable.
    """
    if name not in group:
        return None
    node = group[name]
    if hasattr(node, "shape"):
        return node
    if "ome" in node.attrs and IMAGE_LEVEL in node:
        return node[IMAGE_LEVEL]
    return None


def variables(group) -> list[str]:
    """Names of the stored variables (and ``fixed``): plain arrays and image groups."""
    names = [name for name, _ in group.arrays()]
    names += [name for name, sub in group.groups() if "ome" in sub.attrs]
    return sorted(names)


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


def _array(group, name):
    arr = member(group, name)
    if arr is None:
        raise ParameterError("results", f"{name!r} is not an array of this store")
    return arr


def write_frame(group, index, results):
    """Write one frame's results into row ``index`` of each monitored array.

    Each frame is its own chunk inside a shard of ``shard_frames`` frames: Zarr rewrites the
    shard's file with this frame replaced (read, modify, atomic rename), so the caller must be the
    only process writing that shard (the dispatcher sends a shard to one worker at a time; the
    runner writes from one process).  Repeating a frame writes the same bytes.

    Parameters
    ----------
    group : zarr.Group
        Open for writing.
    index : int
        Position along axis 0 (not the source time index; see the ``frames`` attribute).
    results : dict of str -> ndarray or float
        Values to write; every name must be a variable of the group.  Registered movies stored
        in an integer type are rounded and clipped.
    """
    index = int(index)
    for name, value in results.items():
        arr = _array(group, name)
        if not 0 <= index < arr.shape[0]:
            raise ParameterError("index", f"{index} outside the store's {arr.shape[0]} frames")
        value = to_output_dtype(value, arr.dtype)
        if value.shape != arr.shape[1:]:
            raise ParameterError(
                "results", f"{name!r} has shape {value.shape}, the store expects {arr.shape[1:]}"
            )
        arr[index] = value


def write_frames(group, start, results):
    """Write consecutive frames ``start, start + 1, ...`` of each variable in one call.

    ``results`` maps names to stacks with time on axis 0.  A block that covers whole shards writes
    each shard's file once (the in-process runner writes a shard when its last frame is done).
    """
    start = int(start)
    for name, values in results.items():
        arr = _array(group, name)
        values = to_output_dtype(values, arr.dtype)
        stop = start + values.shape[0]
        if not 0 <= start < stop <= arr.shape[0]:
            raise ParameterError("index", f"frames {start}..{stop - 1} outside the store's "
                                          f"{arr.shape[0]} frames")
        if values.shape[1:] != arr.shape[1:]:
            raise ParameterError(
                "results", f"{name!r} has frames of shape {values.shape[1:]}, the store expects "
                           f"{arr.shape[1:]}")
        arr[start:stop] = values


def write_frame_set(group, indices, results):
    """Write several frames (any positions) of each variable, one write per run of consecutive
    positions.

    ``results`` is a list of per-frame dicts, as :func:`write_frame` takes, one per index.  Zarr
    rewrites the shard a run falls in once, keeping the shard's other frames.
    """
    indices = [int(i) for i in indices]
    if not indices:
        return
    for name in results[0]:
        arr = _array(group, name)
        bad = [i for i in indices if not 0 <= i < arr.shape[0]]
        if bad:
            raise ParameterError("index", f"{bad[:5]} outside the store's {arr.shape[0]} frames")
        values = np.stack([to_output_dtype(r[name], arr.dtype) for r in results])
        if values.shape[1:] != arr.shape[1:]:
            raise ParameterError(
                "results", f"{name!r} has frames of shape {values.shape[1:]}, the store expects "
                           f"{arr.shape[1:]}")
        order = np.argsort(indices, kind="stable")
        positions, values = np.asarray(indices)[order], values[order]
        # runs of consecutive positions as slices (zarr 3.1's orthogonal writes into sharded
        # arrays fail on multi-dimensional chunks)
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for run in np.split(np.arange(len(positions)), breaks):
            first = int(positions[run[0]])
            arr[first:first + len(run)] = values[run[0]:run[-1] + 1]


def open_results(path):
    """Open a results store read-only (public: ``blockreg.open_results``).

    Returns
    -------
    zarr.Group
        The monitored variables (time on axis 0) plus ``fixed``: plain arrays, and images as
        OME-Zarr image groups (:func:`member` returns the array of either); the group attribute
        ``"blockreg"`` holds the parameters, nodes, axes, spacing, time step, shard size and
        source frame indices.
    """
    return open_store(path, "r")


def read_results(path) -> dict:
    """Read every array of a results store into memory.

    Returns
    -------
    dict of str -> numpy.ndarray
    """
    group = open_store(path, "r")
    return {name: np.asarray(member(group, name)[...]) for name in variables(group)}
