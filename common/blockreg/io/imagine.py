"""HolyLab's Imagine format: a text header (``.imagine``) beside the raw pixels (``.cam``).

The header starts with the line ``IMAGINE`` and holds ``key=value`` lines in ``[sections]``.  The
keys used here:

- ``byte order``: ``l`` (little-endian) or ``b`` (big-endian);
- ``pixel data type``: ``uint8`` ... ``int64``, ``float32``/``single``, ``float64``/``double``;
- ``image width``, ``image height``: pixels per row and rows per frame;
- ``frames per stack``: camera frames (z planes) per stack; ``nStacks``: stacks (time points);
- ``um per pixel``: the x and y pixel size;
- ``piezo=start position:0 um;stop position:400 um;...``: the z range, so the z spacing is
  ``|stop - start| / (frames per stack - 1)``;
- ``exposure time`` and ``idle time between stacks`` (``"0.01 s"``, ``"500 us"``): one stack
  takes ``idle + frames per stack * exposure``.

The ``.cam`` file is the pixels in the order x (fastest), y, z, stack, so a stack is the NumPy
array ``(frames per stack, height, width)``: blockreg reads ``(t, z, y, x)``, or ``(t, y, x)`` when
a stack is one frame.  A ``.cam`` shorter than the header promises is read up to its last whole
stack, with a warning.  :func:`write_header` writes a header that this reader and ImagineFormat.jl
read.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .base import SeriesReader, default_axes, path_error
from .units import length_to_um, positive, time_to_s

MAGIC = "IMAGINE"
_DTYPES = {
    "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "int64": "i8", "uint64": "u8", "float16": "f2", "float32": "f4", "single": "f4",
    "float64": "f8", "double": "f8",
}
_COMPOUND = ("piezo", "binning")


def parse_header(path) -> dict:
    """The ``key=value`` pairs of an ``.imagine`` header (compound fields as dicts), as strings.

    Raises
    ------
    ParameterError
        Field ``input.path``: not an Imagine header, or a line without ``=``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise path_error(f"{path} cannot be read: {exc}") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise path_error(f"{path} is not an Imagine header (its first line is not {MAGIC!r})")
    header = {}
    for number, line in enumerate(lines[1:], start=2):
        line = line.strip()
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            # the line itself is not quoted: the message never echoes a file's content
            raise path_error(f"{path} line {number} is not 'key=value'")
        key, value = key.strip(), value.strip()
        if key in _COMPOUND:
            parts = {}
            for part in value.split(";"):
                name, _, item = part.partition(":")
                if name.strip():
                    parts[name.strip()] = item.strip()
            header[key] = parts
        else:
            header[key] = value
    return header


def quantity(text, to_unit) -> float | None:
    """``"0.5 s"`` -> 0.5 with ``to_unit=time_to_s``; None when empty, "NA" or another unit."""
    match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([^\s0-9].*)?", str(text or ""))
    if not match:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    factor = to_unit(match.group(2).strip()) if match.group(2) else None
    return value * factor if factor is not None else None


def _int(header, key, path) -> int:
    try:
        value = int(header[key])
    except KeyError:
        raise path_error(f"{path} has no {key!r} in its Imagine header") from None
    except ValueError:
        raise path_error(f"{path}: {key!r} is not an integer ({header[key]!r})") from None
    if value < 1:
        raise path_error(f"{path}: {key!r} must be at least 1, got {value}")
    return value


def layout(header, path) -> dict:
    """Shape, dtype, spacing (µm, per ``zyx``/``yx``) and time step that a header describes."""
    kind = str(header.get("pixel data type", "")).lower()
    if kind not in _DTYPES:
        raise path_error(f"{path}: Imagine pixel data type {kind!r} is not one of "
                         f"{sorted(set(_DTYPES))}")
    order = str(header.get("byte order", "l")).lower()
    if order not in ("l", "b"):
        raise path_error(f"{path}: Imagine byte order {order!r} is neither 'l' nor 'b'")
    dtype = np.dtype(("<" if order == "l" else ">") + _DTYPES[kind])
    width, height = _int(header, "image width", path), _int(header, "image height", path)
    per_stack, stacks = _int(header, "frames per stack", path), _int(header, "nStacks", path)
    xy = positive(header.get("um per pixel"))
    if per_stack > 1:
        frame_shape = (per_stack, height, width)
        piezo = header.get("piezo") or {}
        start = quantity(piezo.get("start position"), length_to_um)
        stop = quantity(piezo.get("stop position"), length_to_um)
        dz = positive(abs(stop - start) / (per_stack - 1)) if None not in (start, stop) else None
        spacing = (dz, xy, xy) if dz and xy else None
    else:
        frame_shape = (height, width)
        spacing = (xy, xy) if xy else None
    exposure = quantity(header.get("exposure time"), time_to_s)
    idle = quantity(header.get("idle time between stacks"), time_to_s) or 0.0
    step = positive(idle + per_stack * exposure) if exposure is not None else None
    return {"dtype": dtype, "frame_shape": frame_shape, "nstacks": stacks, "spacing": spacing,
            "time_step_s": step}


def cam_path(header_path: Path, header: dict) -> Path:
    """The ``.cam`` beside the header (same name), else the header's ``image data file``."""
    beside = header_path.with_suffix(".cam")
    if beside.exists():
        return beside
    named = str(header.get("image data file", "")).replace("\\", "/").rsplit("/", 1)[-1]
    if named and (header_path.parent / named).exists():
        return header_path.parent / named
    raise path_error(f"{header_path}: its pixel file {beside.name} is missing")


class ImagineSeries(SeriesReader):
    """An Imagine recording (``path`` may name the ``.imagine`` or the ``.cam``), memory-mapped."""

    FORMAT = "Imagine"

    def _open(self):
        header_path = Path(self.path).with_suffix(".imagine")
        if not header_path.exists():
            raise path_error(f"{self.path}: the Imagine header {header_path.name} is missing")
        header = parse_header(header_path)
        info = layout(header, header_path)
        cam = cam_path(header_path, header)
        stack_bytes = info["dtype"].itemsize * int(np.prod(info["frame_shape"]))
        available = os.path.getsize(cam) // stack_bytes
        nstacks = info["nstacks"]
        if available < nstacks:
            if getattr(self, "_warned", False) is False:
                warnings.warn(f"{cam} holds {available} whole stacks, its header promises "
                              f"{nstacks}: reading the first {available}", stacklevel=4)
                self._warned = True
            nstacks = available
        if nstacks < 1:
            raise path_error(f"{cam} is shorter than one stack ({stack_bytes} bytes)")
        self._handle = np.memmap(cam, dtype=info["dtype"], mode="r",
                                 shape=(nstacks,) + info["frame_shape"])
        self.header = header
        self.shape = (nstacks,) + info["frame_shape"]
        self.dtype = info["dtype"].newbyteorder("=")
        self.axes = default_axes(len(info["frame_shape"]))
        self.spacing = info["spacing"]
        self.time_step_s = info["time_step_s"]

    def _read(self, t, region):
        return np.asarray(self._handle[(t,) + region], dtype=self.dtype)

    def close(self):
        self._handle = None


def write_header(path, *, shape, dtype, spacing=None, time_step_s=None, cam_name=None,
                 comment="", app="blockreg") -> Path:
    """Write an ``.imagine`` header describing a ``(T, [Z,] Y, X)`` array stored in a ``.cam``.

    Parameters
    ----------
    path : str or os.PathLike
        The header file (``.imagine``).
    shape : tuple of int
        ``(T, Y, X)`` or ``(T, Z, Y, X)``.
    dtype : numpy.dtype-like
        Pixel type of the ``.cam`` (written in this machine's byte order unless the dtype says).
    spacing : sequence of float, optional
        µm per spatial axis (``(z,) y, x``).  Imagine has one ``um per pixel`` for x and y, so x's
        value is written; z becomes the piezo range.  Unknown: ``um per pixel=NaN`` and a piezo
        range of 0, which this reader reads as "unknown" (ImagineFormat.jl needs the keys present).
    time_step_s : float, optional
        Seconds per stack, written as the exposure time of each frame (idle time 0).  Unknown:
        an exposure of 0 s, read back as "unknown".
    cam_name : str, optional
        ``image data file`` (default: the header's name with ``.cam``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(os.fspath(path))
    dtype = np.dtype(dtype)
    names = {v: k for k, v in _DTYPES.items() if k not in ("single", "double")}
    if dtype.str[1:] not in names:
        raise ParameterError("dtype", f"Imagine cannot store {dtype}")
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (3, 4):
        raise ParameterError("shape", f"expected (T, Y, X) or (T, Z, Y, X), got {shape}")
    nstacks, per_stack = shape[0], (shape[1] if len(shape) == 4 else 1)
    height, width = shape[-2:]
    order = {"<": "l", ">": "b", "|": "l"}.get(dtype.byteorder, "l" if np.little_endian else "b")
    depth = 8 * dtype.itemsize
    lines = [MAGIC, "[general]", "header version=5.1", f"app version={app}",
             f"date and time={_dt.datetime.now().isoformat(timespec='seconds')}",
             f"byte order={order}", "", "[misc params]", f"comment={comment}",
             f"image data file={cam_name or path.with_suffix('.cam').name}"]
    z_range = float(spacing[0]) * (per_stack - 1) if per_stack > 1 and spacing is not None else 0.0
    # every key ImagineFormat.jl's reader looks up is written, "unknown" as NaN or 0
    lines.append(f"piezo=start position:0 um;stop position:{z_range!r} um")
    lines += ["", "[camera]", f"original image depth={depth}", f"saved image depth={depth}",
              f"image width={width}", f"image height={height}",
              f"number of frames requested={nstacks * per_stack}", f"nStacks={nstacks}",
              "pixel order=x y z", "frame index offset=0", f"frames per stack={per_stack}",
              f"pixel data type={names[dtype.str[1:]]}"]
    exposure = float(time_step_s) / per_stack if time_step_s is not None else 0.0
    xy = repr(float(spacing[-1])) if spacing is not None else "NaN"
    lines += ["idle time between stacks=0 s", f"exposure time={exposure!r} s",
              f"um per pixel={xy}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
