"""The pieces of the results layout that viewers and file systems care about.

* OME-Zarr 0.5 metadata of an image group (:func:`image_attributes`), so napari's OME-Zarr
  reader, Fiji's N5/Zarr plug-ins and ome-zarr-py open ``warped``, ``warped0`` and ``fixed`` with
  their axes, voxel size and time step;
* the shard size along time (:func:`shard_frames`): one file per shard per array;
* the conversion of a registered movie to the pixel type the user asked for
  (:func:`to_output_dtype`).

Pure functions, no Zarr: :mod:`blockreg.store` applies them.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ParameterError

__all__ = ["NGFF_VERSION", "MAX_SHARD_FRAMES", "shard_frames", "image_attributes",
           "output_dtype", "to_output_dtype"]

NGFF_VERSION = "0.5"
MAX_SHARD_FRAMES = 64   # at most one file per 64 frames per array (issue 9)
MIN_SHARDS = 16         # a short job still spreads over this many task batches


def shard_frames(nframes: int) -> int:
    """Frames per shard of a job of ``nframes`` frames: ``min(64, ceil(nframes / 16))``.

    The shard is the unit a worker writes (Zarr: "a full shard must be written in one go" when
    several processes write), so the dispatcher sends one shard per task.  Large shards mean few
    files on a network share; a short job gets small shards so its frames still spread over up
    to 16 workers.
    """
    nframes = int(nframes)
    if nframes < 1:
        raise ParameterError("nframes", f"must be at least 1, got {nframes}")
    return max(1, min(MAX_SHARD_FRAMES, math.ceil(nframes / MIN_SHARDS)))


_SPACE_LETTERS = set("zyx")


def image_attributes(name: str, axes: str, *, spacing=None, time_step_s=None) -> dict:
    """The ``ome`` attribute (OME-NGFF 0.5) of an image group holding one level, ``"0"``.

    Parameters
    ----------
    name : str
        The image's name (``"warped"``).
    axes : str
        One letter per array axis, time (if any) first: ``"tyx"``, ``"tzyx"``, ``"yx"``.
    spacing : sequence of float, optional
        Voxel size in µm per spatial axis; unknown (None) leaves the spatial axes without a unit
        and a scale of 1.
    time_step_s : float, optional
        Seconds between frames; unknown leaves the time axis without a unit and a scale of 1.

    Returns
    -------
    dict
        ``{"version": "0.5", "multiscales": [...]}``, the value of the group attribute ``"ome"``.
    """
    axes = str(axes)
    spatial = [a for a in axes if a != "t"]
    if spacing is not None and len(spacing) != len(spatial):
        spacing = None
    entries, scale = [], []
    for letter in axes:
        if letter == "t":
            entry = {"name": "t", "type": "time"}
            step = time_step_s if time_step_s is not None and time_step_s > 0 else None
            if step is not None:
                entry["unit"] = "second"
            scale.append(float(step) if step is not None else 1.0)
        else:
            entry = {"name": letter}
            if letter in _SPACE_LETTERS:
                entry["type"] = "space"
            size = None if spacing is None else spacing[spatial.index(letter)]
            if size is not None and size > 0 and letter in _SPACE_LETTERS:
                entry["unit"] = "micrometer"
                scale.append(float(size))
            else:
                scale.append(1.0)
        entries.append(entry)
    return {
        "version": NGFF_VERSION,
        "multiscales": [{
            "name": name,
            "axes": entries,
            "datasets": [{"path": "0",
                          "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }],
    }


_FLOAT_CHOICE = "float32"
_INPUT_CHOICE = "input"


def output_dtype(choice: str | None, input_dtype) -> np.dtype:
    """The pixel type of the stored registered movies for the spec's ``output.dtype``.

    ``"float32"`` (default) keeps the registered values exactly; ``"input"`` uses the input's
    integer type (values rounded and clipped to its range, pixels outside the image 0), or
    float32 for a floating-point input.
    """
    if choice in (None, _FLOAT_CHOICE):
        return np.dtype(np.float32)
    if choice != _INPUT_CHOICE:
        raise ParameterError("output.dtype", f"must be 'float32' or 'input', got {choice!r}")
    dtype = np.dtype(input_dtype)
    return dtype if dtype.kind in "ui" else np.dtype(np.float32)


def to_output_dtype(values, dtype):
    """``values`` in ``dtype``: an integer type rounds half to even, clips, and maps NaN to 0.

    Works in the values' array module (NumPy or CuPy).  The rounding and clipping are done in
    float64: float32 cannot hold the bounds of 32-bit types (``int32`` max rounds up to 2**31,
    which would wrap to the minimum on the cast).
    """
    from ._backend import array_module

    dtype = np.dtype(dtype)
    xp = array_module(values)
    values = xp.asarray(values)
    if dtype.kind not in "ui" or values.dtype.kind in "ui":
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    out = xp.rint(values.astype(np.float64))
    out = xp.clip(xp.nan_to_num(out, nan=0.0), info.min, info.max)
    return out.astype(dtype)
