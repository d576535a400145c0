"""What a TIFF says about itself: voxel size, time step, completeness (for :mod:`.tiff`).

Spacing comes, in this order of trust, from OME-XML (``PhysicalSize*`` with their units), ImageJ
metadata (``unit``, the X/Y resolution tags, ``spacing`` for z, ``finterval`` for time), or the
plain resolution tags (``ResolutionUnit`` NONE is read as µm, CENTIMETER converted, INCH, the
writers' 72-dpi placeholder, ignored).  A value that cannot be trusted gives None, never a guess.
"""
from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ET
from contextlib import contextmanager

from .base import path_error
from .units import length_to_um, positive, time_to_s

# tifffile logs these (instead of raising) when an IFD or a tag points past the end of the file
_CORRUPTION_HINTS = ("invalid page offset", "invalid value offset", "corrupted", "truncated")


@contextmanager
def corruption_log():
    """Collect tifffile's log messages that mean the file is cut or damaged."""
    messages = []

    class _Collect(logging.Handler):
        def emit(self, record):
            text = record.getMessage()
            if any(hint in text.lower() for hint in _CORRUPTION_HINTS):
                messages.append(text)

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def check_complete(tif, series, path: str) -> None:
    """Refuse a TIFF whose pixel data does not all lie inside the file (cut during a copy).

    Checks every page's strips/tiles (or the contiguous block of a shaped/ImageJ file), and the
    number of images ImageJ or OME-XML metadata promise against those found.
    """
    size = os.path.getsize(path)
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
        if end > size:
            raise path_error(f"{path} is truncated: its pixel data needs {end} bytes, the file has "
                             f"{size}")
    else:
        for index, page in enumerate(series.pages):
            if page is None:
                raise path_error(f"{path} is damaged: page {index} of the image series is missing")
            for offset, count in zip(page.dataoffsets, page.databytecounts):
                if offset + count > size:
                    raise path_error(f"{path} is truncated: page {index}'s data ends at byte "
                                     f"{offset + count}, the file has {size}")
    found = math.prod(series.shape)
    promised = _promised_pixels(tif)
    if promised is not None and found < promised:
        raise path_error(f"{path} is truncated or damaged: its metadata describes {promised} "
                         f"pixels, the file holds {found}")


def _promised_pixels(tif) -> int | None:
    try:
        page = tif.pages.first
        if tif.is_imagej:
            images = int((tif.imagej_metadata or {}).get("images", 0))
            return images * math.prod(page.shape) if images > 1 else None
        if tif.is_ome:
            pixels = _ome_pixels(tif)
            if pixels is None:
                return None
            return math.prod(int(pixels.get(f"Size{a}", 1)) for a in "XYZCT")
    except (ValueError, TypeError, ET.ParseError):
        return None
    return None


def _ome_pixels(tif):
    """Attributes of the first OME ``Pixels`` element (the series that is read), or None."""
    root = ET.fromstring(tif.ome_metadata)
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels":
            return element.attrib
    return None


def spacing_and_time(tif, spatial: str) -> tuple[tuple | None, float | None]:
    """Voxel size in µm for the axes ``spatial`` (e.g. ``"zyx"``) and seconds per frame.

    Malformed metadata gives ``(None, None)``: it is optional and must not stop registration.
    """
    try:
        if tif.is_ome:
            values, step = _ome_values(tif)
        else:
            values, step = _imagej_or_tag_values(tif)
    except Exception:  # noqa: BLE001 - optional metadata: any parse failure means "unknown"
        return None, None
    spacing = None
    if all(values.get(a) is not None for a in spatial):
        spacing = tuple(float(values[a]) for a in spatial)
    return spacing, step


def _ome_values(tif):
    pixels = _ome_pixels(tif) or {}
    values = {}
    for axis in "xyz":
        size = positive(pixels.get(f"PhysicalSize{axis.upper()}"))
        factor = length_to_um(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"))
        values[axis] = size * factor if size is not None and factor is not None else None
    step = positive(pixels.get("TimeIncrement"))
    factor = time_to_s(pixels.get("TimeIncrementUnit", "s"))
    return values, (step * factor if step is not None and factor is not None else None)


def _imagej_or_tag_values(tif):
    page = tif.pages.first
    meta = tif.imagej_metadata or {}
    tags = page.tags
    values = {}
    if tif.is_imagej:
        # ImageJ without a unit is uncalibrated in ImageJ's eyes but microscopy plugins write
        # µm; read it as µm (the files of ../shared/data do this).  An explicit unit is converted.
        unit = meta.get("unit")
        factor = 1.0 if unit is None else length_to_um(str(unit).replace("\\u00B5", "µ"))
    else:
        unit = tags.get("ResolutionUnit")
        name = getattr(getattr(unit, "value", None), "name", "NONE") if unit is not None else "NONE"
        factor = {"NONE": 1.0, "CENTIMETER": 1e4, "MILLIMETER": 1e3, "MICROMETER": 1.0}.get(name)
    xres, yres = tags.get("XResolution"), tags.get("YResolution")
    if factor is not None and xres is not None and yres is not None:
        (xnum, xden), (ynum, yden) = xres.value, yres.value
        if xnum and ynum and (xnum, xden) != (1, 1):  # (1, 1) is "uncalibrated"
            values["x"], values["y"] = factor * xden / xnum, factor * yden / ynum
    if "spacing" in meta and factor is not None:
        values["z"] = positive(meta["spacing"]) and factor * float(meta["spacing"])
    step = positive(meta.get("finterval"))
    tfactor = time_to_s(meta.get("tunit", "s")) if step is not None else None
    return values, (step * tfactor if tfactor is not None else None)
