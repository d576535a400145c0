"""Physical units of the formats' metadata, converted to µm (space) and seconds (time).

Files spell units in many ways: OME uses symbols (``µm``, ``nm``), OME-NGFF UDUNITS names
(``micrometer``), NWB plurals (``meters``), ImageJ ``micron`` or ``\\u00B5m``.  Unknown or missing
units return None, so a reader reports "spacing unknown" rather than a wrong number.
"""
from __future__ import annotations

_LENGTH_UM = {
    "m": 1e6, "meter": 1e6, "metre": 1e6,
    "dm": 1e5, "decimeter": 1e5,
    "cm": 1e4, "centimeter": 1e4,
    "mm": 1e3, "millimeter": 1e3,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micrometer": 1.0, "micron": 1.0,
    "nm": 1e-3, "nanometer": 1e-3,
    "pm": 1e-6, "picometer": 1e-6,
    "å": 1e-4, "angstrom": 1e-4,
}
_TIME_S = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "ms": 1e-3, "millisecond": 1e-3,
    "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "microsecond": 1e-6,
    "ns": 1e-9, "nanosecond": 1e-9,
    "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
}


def _key(unit: str) -> str:
    unit = unit.strip().lower().replace("\\u00b5", "µ")
    if unit.endswith("s") and unit[:-1] in _LENGTH_UM | _TIME_S and len(unit) > 2:
        unit = unit[:-1]  # plurals: "meters", "microns", "seconds"
    return unit


def length_to_um(unit) -> float | None:
    """Micrometres per ``unit`` (``"nm"`` -> 0.001), or None when the unit is not a length."""
    if not isinstance(unit, str) or not unit.strip():
        return None
    return _LENGTH_UM.get(_key(unit))


def time_to_s(unit) -> float | None:
    """Seconds per ``unit`` (``"ms"`` -> 0.001), or None when the unit is not a time."""
    if not isinstance(unit, str) or not unit.strip():
        return None
    return _TIME_S.get(_key(unit))


def positive(value) -> float | None:
    """``value`` as a float when it is a finite positive number, else None (unknown)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 and value != float("inf") else None
