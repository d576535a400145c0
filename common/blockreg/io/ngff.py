"""OME-NGFF (OME-Zarr 0.4 and 0.5) image metadata: which array, its axes, its voxel size.

An OME-Zarr image is a Zarr group whose attributes hold ``multiscales`` (0.4: at the top level;
0.5: under ``"ome"``).  Level 0 (the first dataset, full resolution) is read unless ``dataset``
names another level's path.  Axes come from ``axes`` (names and types: ``time``, ``channel``,
``space``), the voxel size from the ``scale`` transformations (the level's, multiplied by the
multiscale's own when present), converted to µm (space) and seconds (time) with the axes' units.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import default_axes
from .units import length_to_um, positive, time_to_s


@dataclass
class NgffImage:
    """Where the pixels are and what the axes mean."""

    array_path: str
    axes: str            # one letter per array axis from "tczyx"
    spacing: dict        # spatial letter -> µm (missing when unknown)
    time_step_s: float | None


def multiscales(attrs) -> list | None:
    """The ``multiscales`` list of a group's attributes (0.5 under ``"ome"``, 0.4 top level)."""
    attrs = dict(attrs)
    ome = attrs.get("ome")
    if isinstance(ome, dict) and isinstance(ome.get("multiscales"), list):
        return ome["multiscales"]
    found = attrs.get("multiscales")
    return found if isinstance(found, list) else None


def describe(attrs, dataset: str | None) -> NgffImage | None:
    """Interpret the first multiscale of ``attrs``; None when ``dataset`` is not one of its levels.

    Raises
    ------
    ValueError
        Metadata that is not valid OME-NGFF (no datasets, axes that do not match the scale).
    """
    scales = multiscales(attrs)
    if not scales:
        return None
    image = scales[0]
    levels = image.get("datasets") or []
    if not levels:
        raise ValueError("its OME-NGFF multiscales lists no datasets")
    if dataset is None:
        level = levels[0]
    else:
        matches = [lv for lv in levels if str(lv.get("path")).strip("/") == dataset.strip("/")]
        if not matches:
            return None
        level = matches[0]
    axes_meta = image.get("axes")
    scale = _scale(level.get("coordinateTransformations"))
    outer = _scale(image.get("coordinateTransformations"))
    if scale is not None and outer is not None and len(outer) == len(scale):
        scale = [a * b for a, b in zip(scale, outer)]
    if axes_meta is None:  # 0.3 and earlier: tczyx implied by the number of dimensions
        ndim = len(scale) if scale is not None else None
        axes_meta = list("tczyx"[-ndim:]) if ndim else []
    letters, units = _axes(axes_meta)
    if scale is not None and len(scale) != len(letters):
        raise ValueError(f"its OME-NGFF scale has {len(scale)} values for {len(letters)} axes")
    spacing, step = {}, None
    for i, (letter, unit) in enumerate(zip(letters, units)):
        value = positive(scale[i]) if scale is not None else None
        if value is None:
            continue
        if letter == "t":
            factor = time_to_s(unit) if unit else None
            step = value * factor if factor is not None else None
        elif letter in "zyx" and unit:
            factor = length_to_um(unit)
            if factor is not None:
                spacing[letter] = value * factor
    return NgffImage(str(level.get("path")), "".join(letters), spacing, step)


def _scale(transforms):
    for transform in transforms or []:
        if isinstance(transform, dict) and transform.get("type") == "scale" \
                and "scale" in transform:
            return [float(v) for v in transform["scale"]]
    return None


def _axes(axes_meta):
    """One letter (t, c, z, y, x) and unit per axis; spatial axes with other names by position."""
    letters, units, spatial = [], [], []
    for axis in axes_meta:
        if isinstance(axis, str):
            axis = {"name": axis}
        name = str(axis.get("name", "")).lower()
        kind = axis.get("type")
        if kind == "time" or (kind is None and name == "t"):
            letters.append("t")
        elif kind == "channel" or (kind is None and name == "c"):
            letters.append("c")
        else:
            letters.append(name)
            spatial.append(len(letters) - 1)
        units.append(axis.get("unit"))
    names = [letters[i] for i in spatial]
    if len(spatial) > 3:
        raise ValueError(f"its OME-NGFF image has {len(spatial)} spatial axes; at most 3 are read")
    expected = default_axes(len(spatial))[1:] if spatial else ""
    if sorted(names) != sorted(expected):  # names such as "row"/"col": z, y, x by position
        for i, letter in zip(spatial, expected):
            letters[i] = letter
    if len(set(letters)) != len(letters):
        raise ValueError(f"its OME-NGFF axes {letters} repeat a name")
    return letters, units
