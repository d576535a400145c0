"""NWB files (HDF5): ``TwoPhotonSeries`` and ``OnePhotonSeries``, read with h5py.

NWB stores an imaging series as ``data`` with dims ``(frame, x, y)`` or ``(frame, x, y, z)``
(the NWB schema's order: x first).  blockreg presents every series in NumPy image order,
``(t, y, x)`` or ``(t, z, y, x)``, so a frame read here is the stored frame with its spatial axes
reversed, and ``spacing`` follows that order too.  Nothing but the requested frame is read.

The series is chosen with ``dataset``: its name in ``/acquisition`` (``"TwoPhotonSeries"``) or its
full path in the file (``"processing/ophys/Motion/corrected"``); without it, the file's only
imaging series.  Spacing comes from the imaging plane's ``grid_spacing`` (with its unit; NWB's
default is metres), else from the series' ``field_of_view`` divided by the frame size; the time
step from ``starting_time``'s ``rate`` or the imaging plane's ``imaging_rate``, else from the
``timestamps``.  Series whose frames live in external files are refused (open those files).
"""
from __future__ import annotations

import numpy as np

from .base import SeriesReader, dataset_error, default_axes, path_error, select_channel
from .hdf5 import open_h5, refuse_other_files
from .units import length_to_um, positive

IMAGING_TYPES = ("TwoPhotonSeries", "OnePhotonSeries")


def _type(obj) -> str:
    value = obj.attrs.get("neurodata_type", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def imaging_series(f) -> list[str]:
    """Paths of every TwoPhotonSeries/OnePhotonSeries group of an open NWB file."""
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _type(obj) in IMAGING_TYPES:
            found.append(name)

    f.visititems(visit)
    return sorted(found)


def is_nwb(f) -> bool:
    return "nwb_version" in f.attrs


class NwbSeries(SeriesReader):
    """One imaging series of an NWB file, frames as ``(t, [z,] y, x)``."""

    FORMAT = "NWB"

    def _open(self):
        f = open_h5(self.path)
        try:
            self._setup(f)
        except Exception:
            f.close()
            raise
        self._handle = f

    def _setup(self, f):
        if not is_nwb(f):
            raise path_error(f"{self.path} is an HDF5 file but not an NWB file (no nwb_version)")
        name = self._choose(f)
        group = f[name]
        if "data" not in group:
            raise dataset_error(f"{name!r} in {self.path} has no data")
        refuse_other_files(f, f"{name}/data", self.path)
        data = group["data"]
        if "external_file" in group and data.shape[0] == 0:
            raise dataset_error(f"{name!r} in {self.path} keeps its frames in external files "
                                f"{[str(v) for v in group['external_file'][()]]}; open those")
        if data.ndim not in (3, 4):
            raise dataset_error(f"{name!r} in {self.path} has data of shape {data.shape}; NWB "
                                "imaging data is (frame, x, y) or (frame, x, y, z)")
        select_channel("", data.shape, self._options.get("channel"), self.path)
        self._series = name
        nspatial = data.ndim - 1
        self.shape = (data.shape[0],) + tuple(reversed(data.shape[1:]))
        self.axes = default_axes(nspatial)
        self.dtype = np.dtype(data.dtype)
        xyz = _grid_spacing(group, nspatial)
        self.spacing = tuple(reversed(xyz)) if xyz is not None else None
        self.time_step_s = _time_step(group)

    def _choose(self, f) -> str:
        dataset = self._options.get("dataset")
        candidates = imaging_series(f)
        if dataset is None:
            if len(candidates) != 1:
                raise dataset_error(f"{self.path} holds the imaging series {candidates}; name one"
                                    if candidates else f"{self.path} holds no TwoPhotonSeries or "
                                    "OnePhotonSeries")
            return candidates[0]
        for name in (dataset.strip("/"), f"acquisition/{dataset.strip('/')}"):
            if name in f and name in candidates:
                return name
        raise dataset_error(f"{dataset!r} is not an imaging series of {self.path}; it holds "
                            f"{candidates}")

    def _read(self, t, region):
        nspatial = self.ndim
        region = tuple(region) + (slice(None),) * (nspatial - len(region))
        # the stored axes are x, y[, z]: index them in reverse, then reverse the result's axes
        frame = self._handle[self._series]["data"][(t,) + tuple(reversed(region))]
        kept = sum(1 for r in region if not isinstance(r, (int, np.integer)))
        return np.transpose(frame, tuple(range(kept - 1, -1, -1)))


def _grid_spacing(group, nspatial):
    """Voxel size in µm in the stored order (x, y[, z]), or None."""
    plane = group.get("imaging_plane")
    if plane is not None and "grid_spacing" in plane:
        dset = plane["grid_spacing"]
        unit = dset.attrs.get("unit", "meters")
        factor = length_to_um(unit.decode() if isinstance(unit, bytes) else str(unit))
        values = [positive(v) for v in np.ravel(dset[()])]
        if factor is not None and len(values) >= nspatial and all(values[:nspatial]):
            return tuple(v * factor for v in values[:nspatial])
    if "field_of_view" in group:  # metres, for the whole frame
        fov = [positive(v) for v in np.ravel(group["field_of_view"][()])]
        sizes = group["data"].shape[1:]
        if len(fov) >= nspatial and all(fov[:nspatial]):
            return tuple(1e6 * v / n for v, n in zip(fov[:nspatial], sizes))
    return None


def _time_step(group):
    if "starting_time" in group:
        rate = positive(group["starting_time"].attrs.get("rate"))
        if rate:
            return 1.0 / rate
    plane = group.get("imaging_plane")
    if plane is not None and "imaging_rate" in plane:
        rate = positive(plane["imaging_rate"][()])
        if rate:
            return 1.0 / rate
    if "timestamps" in group and group["timestamps"].shape[0] > 1:
        stamps = np.asarray(group["timestamps"][:1000], dtype=float)
        step = positive(np.median(np.diff(stamps)))
        return step
    return None
