"""Common behaviour of the series readers: one frame at a time, picklable by path.

Every problem with the input is a :class:`~blockreg.errors.ParameterError` naming the job-spec
field it comes from (``input.path``, ``input.dataset``, ``input.channel``), so the job-spec checks
report it at submit time (HTTP 422, CLI exit code 2) instead of a worker failing later.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import ParameterError

_SPATIAL_LETTERS = "zyx"
# integers and real floating point: what the preprocessing and the warps compute with
_SUPPORTED_KINDS = "uif"


# a bytes repr in a library's message (tifffile's "header=b'root'", NumPy's magic string) is the
# file's own content: a message never echoes it (the file may be one the user may not read)
_BYTES_REPR = re.compile(r"""(?<![\w])b(['"])(?:\\.|(?!\1).)*\1""")


def without_content(message: str) -> str:
    """``message`` with every bytes literal (a file's content) replaced by ``…``."""
    return _BYTES_REPR.sub("…", message)


def path_error(problem: str) -> ParameterError:
    """An error about the file itself (``input.path``): missing, corrupt, truncated, unsupported.

    Whatever bytes of the file a library's message quotes are removed (:func:`without_content`).
    """
    return ParameterError("input.path", without_content(problem))


def dataset_error(problem: str) -> ParameterError:
    """An error about the array chosen inside the file (``input.dataset``)."""
    return ParameterError("input.dataset", problem)


def channel_error(problem: str) -> ParameterError:
    """An error about the channel choice (``input.channel``)."""
    return ParameterError("input.channel", problem)


def check_dtype(dtype, where: str) -> np.dtype:
    """Refuse pixel types registration cannot use (complex, bool, strings, objects, records).

    Parameters
    ----------
    dtype : numpy.dtype-like
    where : str
        The file (and array) named in the message.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    ParameterError
        Field ``input.path``, for any dtype that is not an integer or real floating-point type.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in _SUPPORTED_KINDS or dtype.fields is not None or dtype.itemsize > 8:
        raise path_error(
            f"{where} holds {dtype} pixels; registration reads integer or real floating-point "
            "images only (no complex, boolean, string or object data)"
        )
    return dtype


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
        Voxel size in µm per spatial axis (the order of ``axes[1:]``), when the file records it
        in a known length unit; None when unknown.
    time_step_s : float or None
        Seconds between frames, when the file records it.
    """

    FORMAT = "an image series"
    path: str
    shape: tuple
    dtype: np.dtype
    axes: str
    spacing: tuple | None
    time_step_s: float | None = None

    def __init__(self, path, **options):
        self.path = str(path)
        self._options = options
        self._handle = None
        self._open()
        if len(self.shape) - 1 < 2:
            raise path_error(
                f"{self.path} has {len(self.shape) - 1} spatial dimension(s) after the time "
                "axis; registration needs at least 2"
            )
        if self.shape[0] < 1 or min(self.shape[1:]) < 1:
            raise path_error(f"{self.path} holds no image data (shape {tuple(self.shape)})")
        self.dtype = check_dtype(self.dtype, self.path)

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
            raise channel_error(
                f"{path} has a channel axis with {nchan} channels; choose one with channel="
            )
        channel = int(channel)
        if not 0 <= channel < nchan:
            raise channel_error(f"{channel} out of range, the file has {nchan} channels")
        return channel
    if channel is not None:
        raise channel_error(f"{path} has no channel axis (axes {axes!r})")
    return None
