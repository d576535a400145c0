"""Zarr arrays (v2 or v3) holding ``(T, *spatial)``; a group needs ``dataset`` to pick the array."""
from __future__ import annotations

import numpy as np

from .base import SeriesReader, default_axes, select_channel


class ZarrSeries(SeriesReader):
    """A Zarr array, or one array of a Zarr group (``dataset``)."""

    def _open(self):
        import zarr

        node = zarr.open(self.path, mode="r")
        dataset = self._options.get("dataset")
        if isinstance(node, zarr.Group):
            if dataset is None:
                names = sorted(name for name, _ in node.arrays())
                raise ValueError(f"dataset: {self.path} is a Zarr group; name one of its arrays {names}")
            if dataset not in node:
                raise ValueError(f"dataset: {dataset!r} not found in {self.path}")
            node = node[dataset]
        elif dataset is not None:
            raise ValueError(f"dataset: {self.path} is a single Zarr array; dataset must be None")
        names = getattr(node.metadata, "dimension_names", None)
        axes = None
        if names and all(isinstance(n, str) and len(n) == 1 for n in names):
            axes = "".join(names).lower()
            if "t" not in axes or axes[0] != "t" or not set(axes) <= set("tczyx"):
                axes = None
        if axes is None:
            axes = default_axes(node.ndim - 1)
        self._channel = select_channel(axes, node.shape, self._options.get("channel"), self.path)
        self._handle = node
        self._raw_axes = axes
        self.axes = axes.replace("c", "")
        self.shape = tuple(n for a, n in zip(axes, node.shape) if a != "c")
        self.dtype = np.dtype(node.dtype)
        spacing = node.attrs.get("spacing")
        self.spacing = tuple(float(s) for s in spacing) if spacing is not None else None

    def _read(self, t, region):
        spatial = iter(region + (slice(None),) * (self.ndim - len(region)))
        index = tuple(t if a == "t" else self._channel if a == "c" else next(spatial)
                      for a in self._raw_axes)
        return self._handle[index]

    def close(self):
        self._handle = None
