"""HDF5 datasets via h5py (optional dependency): ``(T, *spatial)``, chosen with ``dataset``."""
from __future__ import annotations

import numpy as np

from .base import SeriesReader, default_axes, select_channel


class Hdf5Series(SeriesReader):
    """One dataset of an HDF5 file, opened read-only without file locking (shared filesystems)."""

    def _open(self):
        try:
            import h5py
        except ImportError:
            raise ValueError(f"path: reading {self.path} needs h5py, which is not installed") from None
        f = h5py.File(self.path, "r", locking=False)
        dataset = self._options.get("dataset")
        if dataset is None:
            names = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            if len(names) != 1:
                f.close()
                raise ValueError(f"dataset: {self.path} holds datasets {names}; name one")
            dataset = names[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            f.close()
            raise ValueError(f"dataset: {dataset!r} is not a dataset of {self.path}")
        dset = f[dataset]
        select_channel("", dset.shape, self._options.get("channel"), self.path)
        self._handle = f
        self._dset_name = dataset
        self.shape = tuple(dset.shape)
        self.dtype = np.dtype(dset.dtype)
        self.axes = default_axes(dset.ndim - 1)
        size = dset.attrs.get("element_size_um")
        self.spacing = tuple(float(s) for s in size) if size is not None and len(size) == dset.ndim - 1 else None

    def _read(self, t, region):
        return self._handle[self._dset_name][(t,) + region]
