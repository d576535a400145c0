"""The ``"apertures_mismatch"`` job kind: two-stage registration.

Frame tasks run :class:`~blockreg.AperturesMismatch` (per frame ``Es``, ``cs``, ``Qs`` and
``mmis``); when ``lambda`` is given, the whole-series solve follows once the frames are done
(:mod:`blockreg.seriesjob`; in the service a phase of windows, :mod:`blockreg.orchestrate.phases`)
and writes ``u`` for every frame.  ``lambda`` as ``[min, max]`` chooses the affine weight by
``auto_lambda`` on a few frames (``lambda_frames``) and takes their consensus.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from ..errors import ParameterError
from ..jobspec import SpecModel
from ..registry import AlgorithmEntry, register_algorithm
from .apertures import grid, lambda_rule

__all__ = ["AperturesMismatchParams", "APERTURES_MISMATCH"]

Lambda = Union[
    Annotated[float, Field(ge=0, allow_inf_nan=False)],
    Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]],
              Field(min_length=2, max_length=2)],
]


class AperturesMismatchParams(SpecModel):
    """Parameters of two-stage registration: the per-frame mismatch, then the series solve."""

    gridsize: list[PositiveInt] = Field(min_length=1, max_length=3,
                                        description="Apertures per spatial axis, e.g. 8,8.")
    maxshift: list[PositiveInt] = Field(min_length=1, max_length=3,
                                        description="Largest shift searched per spatial axis "
                                                    "(pixels).")
    overlap: NonNegativeInt | list[NonNegativeInt] = Field(
        0, description="Extra pixels on each side of each aperture (a number or one per axis).")
    normalization: Literal["pixels", "intensity"] = Field(
        "pixels", description="Mismatch denominator: valid pixel pairs or summed intensities.")
    correct_bias: bool = Field(False, description="Replace zero-shift mismatch by its neighbours "
                                                  "(camera fixed-pattern noise).")
    lam: Lambda | None = Field(None, alias="lambda", description=(
        "Affine-residual weight of the whole-series solve, or [min, max] to choose it by "
        "auto-lambda on lambda_frames; omitted: store the per-frame fits only (no series solve)."))
    lam_t: Lambda = Field(0.0, alias="lambda_t", description=(
        "Temporal smoothness weight of the series solve, or [min, max] to choose it by "
        "auto-lambda_t on the series' quadratic fits (needs Es monitored)."))
    window: int = Field(128, ge=2, description="Frames per window of the series solve.")
    window_overlap: NonNegativeInt | None = Field(
        None, description="Frames shared by consecutive windows (default max(4, window // 3)).")
    lambda_frames: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="Output positions auto-lambda runs on (default: 5 "
                                        "evenly spaced frames).")

    _lambda_rule = field_validator("lam", "lam_t")(lambda_rule)


# what each monitorable variable of this kind holds (the registry's `variables`)
VARIABLES = {
    "Es": "minimum mismatch ratio per aperture, (*gridsize,)",
    "cs": "integer shift at the minimum per aperture, (*gridsize, N)",
    "Qs": "curvature of the quadratic fit per aperture, (*gridsize, N, N)",
    "mmis": "interpolated mismatch per aperture, (*gridsize, 2, *(2*maxshift+1)) float32 "
        "(needed by the series solve)",
}


def build(params: AperturesMismatchParams, fixed, nodes, preprocess):
    """The :class:`~blockreg.AperturesMismatch` of a job (ParameterError naming a params field)."""
    from ..algorithms.apertures_mismatch import AperturesMismatch

    for a, (g, n) in enumerate(zip(params.gridsize, fixed.shape)):
        if g > n:  # reported on the field, as for "apertures" (the constructor says "nodes")
            raise ParameterError(f"gridsize.{a}", f"{g} apertures along an axis of {n} pixels")
    overlap = tuple(params.overlap) if isinstance(params.overlap, list) else params.overlap
    return AperturesMismatch(fixed, nodes, tuple(params.maxshift), preprocess, overlap=overlap,
                             normalization=params.normalization,
                             correct_bias=params.correct_bias)


APERTURES_MISMATCH = register_algorithm(AlgorithmEntry(
    "apertures_mismatch", AperturesMismatchParams, build, grid, variables=VARIABLES,
    summary="two-stage registration: per-frame aperture mismatch, then one whole-series solve "
            "with temporal smoothness (u written when the series phase ends)",
    default_monitor=("Es", "cs", "Qs", "mmis"),
))
