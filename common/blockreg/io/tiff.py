"""TIFF series (BigTIFF, ImageJ hyperstacks, OME-TIFF, plain multi-page) via tifffile.

The first series of the file is used, with tifffile's axis letters.  The time axis is ``T``; a file
without ``T`` whose leading axis is a generic stack axis (``I``, ``Q``: a plain multi-page TIFF, an
ImageJ stack without hyperstack labels) uses that axis as time, and a file with neither (a single
image, or a ``ZYX`` volume) is one frame.  A channel axis (``C`` or ``S``) must be chosen with
``channel``.  Uncompressed contiguous data is memory-mapped; otherwise only the pages of one frame
are read.  A file whose pages point past its end (cut during a copy) is refused when opened.
"""
from __future__ import annotations

import numpy as np

from .base import SeriesReader, path_error, select_channel
from .tiffmeta import check_complete, corruption_log, spacing_and_time

_SPATIAL = "zyx"


class TiffSeries(SeriesReader):
    """The first series of a TIFF file, read one frame at a time."""

    FORMAT = "TIFF"

    def _open(self):
        import tifffile

        with corruption_log() as problems:
            try:
                # one file only: OME-XML may name other files anywhere on the disk, which the
                # data roots (checked on this file) would not cover
                tif = tifffile.TiffFile(self.path, _multifile=False)
                series = tif.series[0]
            except (tifffile.TiffFileError, IndexError, ValueError, OSError) as exc:
                raise path_error(f"{self.path} is not a readable TIFF: {exc}") from None
        try:
            if problems:
                raise path_error(f"{self.path} is truncated or damaged: {problems[0]}")
            check_complete(tif, series, self.path)
        except Exception:
            tif.close()
            raise
        self._handle = tif
        raw_axes = series.axes.lower().replace("s", "c")
        shape = tuple(series.shape)
        if "t" not in raw_axes:
            if len(raw_axes) > 2 and raw_axes[0] in "iq":
                raw_axes = "t" + raw_axes[1:]
            else:
                raw_axes, shape = "t" + raw_axes, (1,) + shape
        if raw_axes.count("c") > 1:
            raise path_error(f"{self.path} has several channel-like axes ({series.axes})")
        unknown = [a for a in raw_axes if a not in "tc" + _SPATIAL]
        if unknown:
            raise path_error(
                f"{self.path} has axes {series.axes!r}; cannot interpret {unknown} as time, "
                "channel or space"
            )
        self._channel = select_channel(raw_axes, shape, self._options.get("channel"), self.path)
        self._raw_axes, self._raw_shape = raw_axes, shape
        spatial = [a for a in raw_axes if a in _SPATIAL]
        self.axes = "t" + "".join(spatial)
        self.shape = (shape[raw_axes.index("t")],) + tuple(shape[raw_axes.index(a)] for a in spatial)
        self.dtype = np.dtype(series.dtype)
        self.spacing, self.time_step_s = spacing_and_time(tif, "".join(spatial))
        self._memmap = None
        if series.dataoffset is not None and len(series.shape) == len(shape):
            self._memmap = np.memmap(
                self.path, dtype=series.dtype, mode="r", offset=series.dataoffset, shape=shape
            )
        elif series.dataoffset is not None:
            self._memmap = np.memmap(
                self.path, dtype=series.dtype, mode="r", offset=series.dataoffset, shape=series.shape
            ).reshape(shape)

    def _frame_index(self, t):
        index = []
        for a in self._raw_axes:
            index.append(t if a == "t" else self._channel if a == "c" else slice(None))
        return tuple(index)

    def _read(self, t, region):
        index = self._frame_index(t)
        if self._memmap is not None:
            frame = self._memmap[index]
        else:
            frame = self._read_pages(index)
        frame = _to_tzyx(frame, [a for a in self._raw_axes if a in _SPATIAL], self.axes[1:])
        return frame[region]

    def _read_pages(self, index):
        # Pages hold the trailing image plane(s) (YX, or YXS with samples); the leading axes
        # enumerate pages in C order.  Read just the pages of this frame.
        series = self._handle.series[0]
        page_shape = series.pages[0].shape if series.pages[0] is not None else series.shape[-2:]
        nlead = len(self._raw_shape) - len(page_shape)
        if nlead < 0 or self._raw_shape[nlead:] != tuple(page_shape):
            return np.asarray(series.asarray())[index]  # unusual page layout: read all, rarely hit
        lead_shape = self._raw_shape[:nlead]
        lead_index = index[:nlead]
        grids = np.meshgrid(
            *[np.arange(n)[i] if isinstance(i, slice) else np.array([i])
              for n, i in zip(lead_shape, lead_index)],
            indexing="ij",
        )
        keys = np.ravel_multi_index([g.ravel() for g in grids], lead_shape) if lead_shape else [0]
        pages = self._handle.asarray(key=[int(k) for k in keys], series=0)
        pages = np.asarray(pages).reshape(
            tuple(g for g, i in zip(lead_shape, lead_index) if isinstance(i, slice)) + tuple(page_shape)
        )
        return pages[index[nlead:]]


def _to_tzyx(frame, axes, wanted):
    """Reorder the spatial axes of ``frame`` (named ``axes``) into ``wanted`` order."""
    return np.transpose(frame, [axes.index(a) for a in wanted]) if list(axes) != list(wanted) else frame

