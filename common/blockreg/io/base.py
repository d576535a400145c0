"""Common behaviour of the series readers: one frame at a time, picklable by path."""
from __future__ import annotations

import numpy as np

_SPATIAL_LETTERS = "zyx"


def default_axes(nspatial: int) -> str:
    """``"t"`` followed by the last ``nspatial`` letters of ``"zyx"`` (``"tyx"``, ``"tzyx"``)."""
    if nspatial > len(_SPATIAL_LETTERS):
        return "t" + "".join(f"d{i}" for i in range(nspatial))
    return "t" + _SPATIAL_LETTERS[-nspatial:]


class SeriesReader:
    """A time series of images on disk, read one frame at a time.

    Subclasses set ``path``, ``shape`` (T, *spatial), ``dtype``, ``axes`` and ``spacing`` in
    :meth:`_open` and implement :meth:`_read`.  File handles live in ``_handle`` and are never
    pickled: a reader sent to a worker process reopens its file there.

    Attributes
    ----------
    shape : tuple of int
        ``(T, *spatial)``.
    dtype : numpy.dtype
    ndim : int
        Number of spatial dimensions.
    axes : str
        Lower-case axis names, time first, e.g. ``"tyx"``.
    spacing : tuple of float or None
        Pixel spacing per spatial axis (physical units of the file), when the file records it.
    """

    path: str
    shape: tuple
    dtype: np.dtype
    axes: str
    spacing: tuple | None

    def __init__(self, path, **options):
        self.path = str(path)
        self._options = options
        self._handle = None
        self._open()
        if len(self.shape) - 1 < 2:
            raise ValueError(
                f"path: {self.path} has {len(self.shape) - 1} spatial dimension(s) after the time "
                "axis; registration needs at least 2"
            )

    def _open(self) -> None:
        raise NotImplementedError

    def _read(self, t: int, region: tuple) -> np.ndarray:
        """Frame ``t`` (0 <= t < T), restricted to ``region`` (spatial indices, maybe empty)."""
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape) - 1

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int, region=()) -> np.ndarray:
        """Frame ``t`` (negative indices count from the end) as an in-memory ndarray.

        ``region`` optionally selects part of the frame (a tuple of per-axis slices or indices),
        read without loading the rest where the format allows it (memory maps, Zarr chunks).
        """
        n = self.shape[0]
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise TypeError(f"t: frame index must be an integer, got {type(t).__name__}")
        t = int(t)
        if t < -n or t >= n:
            raise IndexError(f"t: frame {t} out of range for a series of {n} frames")
        region = tuple(region)
        if len(region) > self.ndim:
            raise IndexError(f"region: {len(region)} indices for {self.ndim} spatial axes")
        if self._handle is None:
            self._open()
        return np.array(self._read(t % n, region))

    def __getitem__(self, key) -> np.ndarray:
        """``reader[t]`` is one frame; ``reader[t, y0:y1, x0:x1]`` a region of it."""
        if isinstance(key, tuple):
            if not key:
                raise TypeError("key: give a frame index")
            return self.frame(key[0], key[1:])
        return self.frame(key)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None and hasattr(handle, "close"):
            handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r}, shape={self.shape}, axes={self.axes!r})"


def select_channel(axes: str, shape: tuple, channel, path: str) -> int | None:
    """Validate ``channel`` against a channel axis (``"c"``) in ``axes``; return it as int or None."""
    if "c" in axes:
        nchan = shape[axes.index("c")]
        if channel is None:
            raise ValueError(
                f"channel: {path} has a channel axis with {nchan} channels; choose one with channel="
            )
        channel = int(channel)
        if not 0 <= channel < nchan:
            raise ValueError(f"channel: {channel} out of range, the file has {nchan} channels")
        return channel
    if channel is not None:
        raise ValueError(f"channel: {path} has no channel axis (axes {axes!r})")
    return None
