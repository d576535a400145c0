"""NumPy ``.npy`` series (T, *spatial), memory-mapped."""
from __future__ import annotations

import numpy as np

from .base import SeriesReader, default_axes, select_channel


class NpySeries(SeriesReader):
    """A ``.npy`` file holding ``(T, *spatial)``; frames are read through a memory map."""

    FORMAT = "NumPy .npy"

    def _open(self):
        arr = np.load(self.path, mmap_mode="r")
        select_channel("", arr.shape, self._options.get("channel"), self.path)
        self._handle = arr
        self.shape = tuple(arr.shape)
        self.dtype = arr.dtype
        self.axes = default_axes(arr.ndim - 1)
        self.spacing = None

    def _read(self, t, region):
        return self._handle[(t,) + region]

    def close(self):
        # a memmap has no close(); dropping the reference releases the mapping
        self._handle = None
