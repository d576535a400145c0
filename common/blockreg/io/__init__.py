"""Series readers: ``open_series(path)`` gives one object with the same interface for every format.

Every reader reads one frame at a time (``reader[t]``), so a movie larger than memory can be
registered, and pickles by path, so worker processes reopen the file themselves.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import SeriesReader

__all__ = ["open_series", "SeriesReader"]

_TIFF = (".tif", ".tiff", ".btf", ".tf8")
_HDF5 = (".h5", ".hdf5", ".hdf")


def open_series(path, dataset=None, channel=None) -> SeriesReader:
    """Open an image time series for frame-by-frame reading.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``, TIFF (``.tif``/``.tiff``), a Zarr array or group (directory), or HDF5
        (``.h5``/``.hdf5``, needs h5py).
    dataset : str, optional
        The array inside a Zarr group or HDF5 file.
    channel : int, optional
        The channel to read when the series has a channel axis (required then).

    Returns
    -------
    SeriesReader
        With ``shape`` (T, *spatial), ``dtype``, ``ndim`` (spatial dims), ``axes`` (e.g. ``"tyx"``),
        ``spacing``, ``len()``, ``reader[t]`` / ``reader.frame(t)``.

    Raises
    ------
    ValueError
        Missing path, unknown format, a channel axis without ``channel``, fewer than 2 spatial
        dimensions.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise ValueError(f"path: {path} does not exist")
    suffix = path.suffix.lower()
    options = {"dataset": dataset, "channel": channel}
    if path.is_dir() or suffix == ".zarr":
        from .zarrfile import ZarrSeries

        return ZarrSeries(path, **options)
    if dataset is not None and suffix not in _HDF5:
        raise ValueError(f"dataset: only Zarr and HDF5 inputs have datasets, not {path.name}")
    if suffix == ".npy":
        from .npy import NpySeries

        return NpySeries(path, channel=channel)
    if suffix in _TIFF:
        from .tiff import TiffSeries

        return TiffSeries(path, channel=channel)
    if suffix in _HDF5:
        from .hdf5 import Hdf5Series

        return Hdf5Series(path, **options)
    raise ValueError(
        f"path: unknown format {suffix or '(no suffix)'!r} for {path.name}; "
        "use .npy, .tif/.tiff, .zarr or .h5"
    )
