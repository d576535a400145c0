"""Series readers: ``open_series(path)`` gives one object with the same interface for every format.

Every reader reads one frame at a time (``reader[t]``), so a movie larger than memory can be
registered, and pickles by path, so worker processes reopen the file themselves.  The formats and
what each one's metadata gives are described in docs/formats.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ParameterError
from .base import SeriesReader, dataset_error, path_error

__all__ = ["open_series", "SeriesReader"]

_TIFF = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
_HDF5 = (".h5", ".hdf5", ".hdf")
_IMAGINE = (".imagine", ".cam")


def open_series(path, dataset=None, channel=None) -> SeriesReader:
    """Open an image time series for frame-by-frame reading.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``; TIFF, BigTIFF, OME-TIFF or ImageJ hyperstack (``.tif``/``.tiff``/``.btf``); a Zarr
        array or group, or an OME-Zarr image (a directory, e.g. ``.zarr``/``.ome.zarr``); HDF5
        (``.h5``/``.hdf5``) or NWB (``.nwb``), both need h5py; Imagine (``.imagine`` or ``.cam``).
    dataset : str, optional
        The array inside a Zarr group or HDF5 file, the multiscale level of an OME-Zarr image
        (default level 0), or the imaging series of an NWB file (default: its only one).
    channel : int, optional
        The channel to read when the series has a channel axis (required then).

    Returns
    -------
    SeriesReader
        With ``shape`` (T, *spatial), ``dtype``, ``ndim`` (spatial dims), ``axes`` (e.g. ``"tyx"``),
        ``spacing`` (µm per spatial axis or None), ``time_step_s`` (or None), ``len()``,
        ``reader[t]`` / ``reader[t, y0:y1, x0:x1]`` / ``reader.frame(t)``.

    Raises
    ------
    blockreg.errors.ParameterError
        A ValueError whose ``field`` is ``input.path`` (missing, unknown format, corrupt or
        truncated, unsupported pixel type, fewer than 2 spatial dimensions), ``input.dataset``
        (unknown or ambiguous dataset) or ``input.channel``.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise path_error(f"{path} does not exist")
    reader_class = _reader_class(path, dataset)
    options = {"dataset": dataset, "channel": channel}
    try:
        return reader_class(path, **options)
    except ParameterError:
        raise
    except (ValueError, OSError, KeyError, TypeError, EOFError) as exc:
        # a library's own complaint about a damaged file: name the field, keep the reason
        raise path_error(f"{path} cannot be read as {reader_class.FORMAT}: {exc}") from None


def _reader_class(path: Path, dataset):
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zarr":
        from .zarrfile import ZarrSeries

        return ZarrSeries
    if suffix == ".nwb" or (suffix in _HDF5 and _is_nwb(path)):
        from .nwb import NwbSeries

        return NwbSeries
    if suffix in _HDF5:
        from .hdf5 import Hdf5Series

        return Hdf5Series
    if dataset is not None:
        raise dataset_error(f"only Zarr, HDF5 and NWB inputs have datasets, not {path.name}")
    if suffix == ".npy":
        from .npy import NpySeries

        return NpySeries
    if suffix in _TIFF:
        from .tiff import TiffSeries

        return TiffSeries
    if suffix in _IMAGINE:
        from .imagine import ImagineSeries

        return ImagineSeries
    raise path_error(
        f"unknown format {suffix or '(no suffix)'!r} for {path.name}; use .npy, .tif/.tiff, "
        ".zarr/.ome.zarr, .h5/.hdf5, .nwb or .imagine"
    )


def _is_nwb(path: Path) -> bool:
    """An HDF5 file written by an NWB library (root attribute ``nwb_version``)."""
    try:
        import h5py
    except ImportError:
        return False
    try:
        with h5py.File(path, "r", locking=False) as f:
            return "nwb_version" in f.attrs
    except OSError:
        return False  # the HDF5 reader reports the damage with its own message
