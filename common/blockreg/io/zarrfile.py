"""Zarr arrays (v2 or v3) and OME-Zarr images (OME-NGFF 0.4 and 0.5) holding a time series.

What is read, given ``path`` and ``dataset``:

- an OME-Zarr image group: its multiscale level 0, or the level whose path ``dataset`` names; axes
  and voxel size from its metadata (:mod:`.ngff`);
- a plain group: the array (or OME-Zarr image sub-group) ``dataset`` names; a bioformats2raw
  container (an image in the sub-group ``0``) is read without naming it;
- a single array: ``dataset`` must be None.

A plain array's axes are its ``dimension_names`` when they are single letters starting with ``t``
(``t``, ``c``, ``z``, ``y``, ``x``), otherwise ``t`` followed by ``zyx``; its spacing is the
``spacing`` attribute (µm) when present.  An image without a time axis is one frame.
"""
from __future__ import annotations

import numpy as np

from . import ngff
from .base import SeriesReader, dataset_error, default_axes, path_error, select_channel


class ZarrSeries(SeriesReader):
    """A Zarr array, one array of a Zarr group, or an OME-Zarr image (``dataset``)."""

    FORMAT = "Zarr"

    def _open(self):
        import zarr

        try:
            node = zarr.open(self.path, mode="r")
        except Exception as exc:  # noqa: BLE001 - zarr raises many types for a non-Zarr folder
            raise path_error(f"{self.path} is not a readable Zarr array or group: {exc}") from None
        array, axes, spacing, step = self._locate(node, self._options.get("dataset"))
        if "t" not in axes:  # one image or volume: a series of one frame
            axes = "t" + axes
            self._virtual_t = True
        else:
            self._virtual_t = False
        shape = (1,) + tuple(array.shape) if self._virtual_t else tuple(array.shape)
        self._channel = select_channel(axes, shape, self._options.get("channel"), self.path)
        self._handle = array
        self._raw_axes = axes
        self.axes = axes.replace("c", "")
        self.shape = tuple(n for a, n in zip(axes, shape) if a != "c")
        self.dtype = np.dtype(array.dtype)
        spatial = self.axes[1:]
        self.spacing = (tuple(float(spacing[a]) for a in spatial)
                        if spacing and all(a in spacing for a in spatial) else None)
        self.time_step_s = step

    def _locate(self, node, dataset):
        """The array to read and its axes, spacing (letter -> µm) and time step."""
        import zarr

        if isinstance(node, zarr.Array):
            if dataset is not None:
                raise dataset_error(f"{self.path} is a single Zarr array; dataset must be None")
            return self._plain(node)
        image = self._image(node, dataset)
        if image is not None:
            return image
        if dataset is None:
            if "0" in node and isinstance(node["0"], zarr.Group):
                image = self._image(node["0"], None)  # bioformats2raw layout
                if image is not None:
                    return image
            names = sorted(name for name, _ in node.members())
            raise dataset_error(f"{self.path} is a Zarr group; name one of its arrays or images "
                                f"{names}")
        if dataset not in node:
            raise dataset_error(f"{dataset!r} not found in {self.path}")
        child = node[dataset]
        if isinstance(child, zarr.Array):
            return self._plain(child)
        image = self._image(child, None)
        if image is None:
            raise dataset_error(f"{dataset!r} in {self.path} is a group, neither an array nor an "
                                "OME-Zarr image")
        return image

    def _image(self, group, dataset):
        try:
            meta = ngff.describe(group.attrs, dataset)
        except (ValueError, TypeError, KeyError) as exc:
            raise path_error(f"{self.path}: {exc}") from None
        if meta is None:
            return None
        try:
            array = group[meta.array_path]
        except KeyError:
            raise path_error(f"{self.path}: its OME-NGFF metadata names the array "
                             f"{meta.array_path!r}, which is missing") from None
        if len(meta.axes) != array.ndim:
            raise path_error(f"{self.path}: its OME-NGFF axes {meta.axes!r} do not match the "
                             f"{array.ndim} dimensions of {meta.array_path!r}")
        return array, meta.axes, meta.spacing, meta.time_step_s

    def _plain(self, array):
        names = getattr(array.metadata, "dimension_names", None)
        axes = None
        if names and all(isinstance(n, str) and len(n) == 1 for n in names):
            axes = "".join(names).lower()
            if "t" not in axes or axes[0] != "t" or not set(axes) <= set("tczyx"):
                axes = None
        if axes is None:
            axes = default_axes(array.ndim - 1)
        spacing = array.attrs.get("spacing")
        spatial = axes.replace("t", "").replace("c", "")
        by_axis = None
        if spacing is not None and len(spacing) == len(spatial):
            by_axis = {a: float(s) for a, s in zip(spatial, spacing)}
        return array, axes, by_axis, None

    def _read(self, t, region):
        spatial = iter(region + (slice(None),) * (self.ndim - len(region)))
        index = tuple(t if a == "t" else self._channel if a == "c" else next(spatial)
                      for a in self._raw_axes if not (a == "t" and self._virtual_t))
        return self._handle[index]

    def close(self):
        self._handle = None
