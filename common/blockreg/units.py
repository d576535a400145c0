"""Parameters in micrometres: a job spec may give sizes in µm instead of pixels.

``params.maxshift_um`` (instead of ``maxshift``), ``params.aperture_um`` (an aperture's width,
instead of ``gridsize``), ``preprocess.sigma_lp_um`` and ``preprocess.sigma_hp_um`` (instead of
``sigma_lp``/``sigma_hp``) are converted to pixels with the input's voxel size: the reader's
(``spacing`` of :func:`blockreg.io.open_series`), or ``input.spacing_um`` when the spec gives it.
:func:`resolve_units` returns the spec with the pixel fields filled in and the µm fields cleared
(a plain pixel spec, valid on its own): what every process computes with, and what the results
store records as ``spec``; the store's ``converted_from_um`` attribute keeps the µm values asked
for (:func:`converted_fields`).

Conversions (per spatial axis ``a``, spacing ``s_a`` µm per pixel, image size ``n_a`` pixels after
the ROI):

- ``maxshift_a = ceil(maxshift_um_a / s_a)``: the search covers at least the distance asked for;
- ``gridsize_a = max(1, round(n_a * s_a / aperture_um_a))``: apertures tile the image, so an
  aperture is about ``n_a / gridsize_a`` pixels wide;
- ``sigma_a = sigma_um_a / s_a`` (pixels, not rounded).

A single number stands for every axis.
"""
from __future__ import annotations

import math

from .errors import ParameterError

__all__ = ["input_spacing", "resolve_units", "converted_fields", "PIXEL_AND_UM_FIELDS"]

# (section, pixel field, µm field): exactly one of each pair may be given
PIXEL_AND_UM_FIELDS = (("params", "maxshift", "maxshift_um"),
                       ("params", "gridsize", "aperture_um"),
                       ("preprocess", "sigma_lp", "sigma_lp_um"),
                       ("preprocess", "sigma_hp", "sigma_hp_um"))


def input_spacing(spec, series) -> tuple[float, ...] | None:
    """Voxel size in µm per spatial axis: ``input.spacing_um`` if given, else the reader's.

    Raises
    ------
    ParameterError
        ``input.spacing_um`` with the wrong number of entries.
    """
    ndim = len(series.shape) - 1
    given = spec.input.spacing_um
    if given is not None:
        if len(given) == 1:
            given = list(given) * ndim
        if len(given) != ndim:
            raise ParameterError("input.spacing_um", f"has {len(given)} entries but the image "
                                                     f"has {ndim} spatial axes")
        return tuple(float(v) for v in given)
    spacing = getattr(series, "spacing", None)
    if spacing is None or len(spacing) < ndim:
        return None
    spacing = tuple(float(v) for v in list(spacing)[-ndim:])
    return spacing if all(v > 0 and math.isfinite(v) for v in spacing) else None


def _per_axis(value, ndim, field):
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim:
        raise ParameterError(field, f"has {len(values)} entries but the image has {ndim} "
                                    f"spatial axes")
    return [float(v) for v in values]


def resolve_units(spec, spacing, image_shape):
    """The spec with every µm size converted to pixels (unchanged when none is given).

    Parameters
    ----------
    spec : JobSpec
    spacing : sequence of float or None
        µm per pixel per spatial axis (:func:`input_spacing`).
    image_shape : sequence of int
        The image after the ROI.

    Raises
    ------
    ParameterError
        Naming the µm field: the voxel size is unknown, or the number of entries is wrong.
    """
    ndim = len(image_shape)
    params, preprocess = {}, {}
    for section, pixel_field, um_field in PIXEL_AND_UM_FIELDS:
        model = getattr(spec, section)
        value = getattr(model, um_field, None)
        if value is None:
            continue
        field = f"{section}.{um_field}"
        if spacing is None:
            raise ParameterError(field, "the input's voxel size is unknown: give "
                                        f"input.spacing_um, or {section}.{pixel_field} in pixels")
        um = _per_axis(value, ndim, field)
        if um_field == "aperture_um":
            ratios = [n * s / u for n, s, u in zip(image_shape, spacing, um)]
        else:
            ratios = [u / s for u, s in zip(um, spacing)]
        if not all(math.isfinite(r) for r in ratios):  # a finite size, but not in pixels
            raise ParameterError(field, f"{value} µm with a voxel size of {list(spacing)} µm "
                                        "is not a finite number of pixels")
        if um_field == "maxshift_um":
            pixels = [max(1, math.ceil(r - 1e-9)) for r in ratios]
        elif um_field == "aperture_um":
            pixels = [max(1, round(r)) for r in ratios]
        else:
            pixels = ratios
        target = params if section == "params" else preprocess
        target[pixel_field] = pixels
        target[um_field] = None
    if not params and not preprocess:
        return spec
    update = {}
    if params:
        update["params"] = spec.params.model_copy(update=params)
    if preprocess:
        update["preprocess"] = spec.preprocess.model_copy(update=preprocess)
    return spec.model_copy(update=update)


def converted_fields(spec) -> dict:
    """``{"params.maxshift_um": [...], ...}``: the µm sizes of ``spec`` (before resolution)."""
    found = {}
    for section, _, um_field in PIXEL_AND_UM_FIELDS:
        value = getattr(getattr(spec, section), um_field, None)
        if value is not None:
            found[f"{section}.{um_field}"] = value
    return found
