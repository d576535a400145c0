"""Small grey-level PNG pictures of frames for the dashboard (no imaging library needed).

A frame of any dimension becomes a 2-D picture: a 3-D frame is shown as its maximum projection
along the first spatial axis (z), which is what a person judging a registration looks at first.
Grey levels are stretched between two percentiles so that a dim movie is still visible; a frame and
its registered version are drawn with the same limits so that they can be compared.
"""
from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

__all__ = ["plane", "display_limits", "to_png", "png_data_url"]

MAX_SIDE = 512  # pictures larger than this are subsampled: a thumbnail, not the data


def plane(frame) -> np.ndarray:
    """The 2-D picture of a frame: itself, or the NaN-aware maximum over the leading axes."""
    img = np.asarray(frame, dtype=np.float32)
    while img.ndim > 2:
        with np.errstate(all="ignore"):
            img = np.fmax.reduce(img, axis=0)
    return img


def display_limits(img, low: float = 1.0, high: float = 99.8) -> tuple[float, float]:
    """Grey-level limits: the ``low`` and ``high`` percentiles of the finite pixels."""
    finite = np.asarray(img)[np.isfinite(img)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _subsample(img: np.ndarray) -> np.ndarray:
    step = max(1, -(-max(img.shape) // MAX_SIDE))
    return img[::step, ::step]


def to_png(img, limits=None) -> bytes:
    """Encode a 2-D float picture as an 8-bit grey PNG (NaN drawn black).

    Parameters
    ----------
    img : array_like, 2-D
    limits : (float, float), optional
        Grey levels mapped to black and white (default: :func:`display_limits`).
    """
    img = _subsample(np.asarray(img, dtype=np.float32))
    lo, hi = limits if limits is not None else display_limits(img)
    with np.errstate(all="ignore"):
        scaled = np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0) * 255.0
    pixels = np.nan_to_num(scaled, nan=0.0).astype(np.uint8)
    height, width = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6))
            + chunk(b"IEND", b""))


def png_data_url(img, limits=None) -> str:
    """:func:`to_png` as a ``data:image/png;base64,...`` URL (for JSON answers)."""
    return "data:image/png;base64," + base64.b64encode(to_png(img, limits)).decode("ascii")
