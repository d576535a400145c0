"""HDF5 datasets via h5py (optional dependency): ``(T, *spatial)``, chosen with ``dataset``.

A file with an ``nwb_version`` attribute is an NWB file and is read by :mod:`.nwb` instead.
Spacing (µm) comes from the dataset's ``element_size_um`` attribute when present.
"""
from __future__ import annotations

import numpy as np

from .base import SeriesReader, dataset_error, default_axes, path_error, select_channel


def open_h5(path):
    """Open read-only without file locking (shared filesystems), with errors naming the field."""
    try:
        import h5py
    except ImportError:
        raise path_error(f"reading {path} needs h5py (pip install 'blockreg[hdf5]')") from None
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise path_error(f"{path} is not a readable HDF5 file: {exc}") from None


def refuse_other_files(f, name: str, path) -> None:
    """Refuse a dataset whose pixels live in another file: reached through an external link,
    virtual, or with external raw storage. The data roots check only the file a spec names, so
    such a dataset would read whatever file it points to (open that file itself instead)."""
    import h5py

    parts = name.strip("/").split("/")
    for depth in range(1, len(parts) + 1):
        try:
            link = f.get("/".join(parts[:depth]), getlink=True)
        except (KeyError, RuntimeError, ValueError):  # "." and the like: no link of its own
            continue
        if isinstance(link, h5py.ExternalLink):
            raise dataset_error(f"{name!r} in {path} is a link to another file; open that file")
    try:
        dset = f.get(name)
    except (KeyError, RuntimeError, ValueError):  # a dangling link: "not a dataset" follows
        return
    if dset is not None and dset.file.filename != f.filename:  # a soft link via another file
        raise dataset_error(f"{name!r} in {path} is a link to another file; open that file")
    if isinstance(dset, h5py.Dataset) and (dset.is_virtual or dset.external):
        raise dataset_error(f"{name!r} in {path} keeps its pixels in another file; open that file")


class Hdf5Series(SeriesReader):
    """One dataset of an HDF5 file."""

    FORMAT = "HDF5"

    def _open(self):
        import h5py

        f = open_h5(self.path)
        try:
            dset = self._dataset(f, h5py)
            select_channel("", dset.shape, self._options.get("channel"), self.path)
        except Exception:
            f.close()
            raise
        self._handle = f
        self._dset_name = dset.name
        self.shape = tuple(dset.shape)
        self.dtype = np.dtype(dset.dtype)
        self.axes = default_axes(dset.ndim - 1)
        size = dset.attrs.get("element_size_um")
        self.spacing = (tuple(float(s) for s in size)
                        if size is not None and len(size) == dset.ndim - 1 else None)

    def _dataset(self, f, h5py):
        dataset = self._options.get("dataset")
        if dataset is None:
            names = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            if len(names) != 1:
                raise dataset_error(f"{self.path} holds datasets {names}; name one")
            dataset = names[0]
        refuse_other_files(f, dataset, self.path)  # before anything of it is followed or read
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise dataset_error(f"{dataset!r} is not a dataset of {self.path}")
        return f[dataset]

    def _read(self, t, region):
        return self._handle[self._dset_name][(t,) + region]
