"""The ``"apertures"`` job kind: :class:`~blockreg.Apertures` in a job spec.

The params model states the shape of the parameters only. The rules that need the image (maxshift
smaller than the image, apertures no wider than it, no more apertures than pixels) and the
auto-lambda range are the algorithm's: :class:`~blockreg.Apertures` raises ParameterError and the
spec checks report it as ``params.<field>``.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from ..algorithms.checks import LAMBDA_MAX, LAMBDA_RANGE_MIN
from ..errors import ParameterError
from ..jobspec import SpecModel
from ..registry import AlgorithmEntry, register_algorithm

__all__ = ["AperturesParams", "APERTURES"]

# the bounds are the algorithm's (check_lambda); stated here so the OpenAPI document shows them
Lambda = Union[
    Annotated[float, Field(ge=0, le=LAMBDA_MAX, allow_inf_nan=False)],
    Annotated[list[Annotated[float, Field(ge=LAMBDA_RANGE_MIN, le=LAMBDA_MAX,
                                          allow_inf_nan=False)]],
              Field(min_length=2, max_length=2)],
]


def lambda_rule(lam):
    """A pydantic validator of a lambda field stating the algorithm's rule
    (:func:`~blockreg.algorithms.checks.check_lambda`; e.g. an auto-lambda range spans at least 4
    steps of 2x), so that a bad value is a 422 even before the input is opened; None passes."""
    from ..algorithms.checks import check_lambda

    if lam is not None:
        try:
            check_lambda(lam)
        except ParameterError as exc:
            raise ValueError(exc.problem) from None
    return lam


class AperturesParams(SpecModel):
    """Parameters of aperture-based deformable registration (:class:`blockreg.Apertures`)."""

    # the µm forms come first so that the pixel fields' check sees them (exactly one of each)
    aperture_um: list[PositiveFloat] | None = Field(
        None, min_length=1, max_length=3,
        description="Aperture width per spatial axis in µm, instead of gridsize.")
    maxshift_um: list[PositiveFloat] | None = Field(
        None, min_length=1, max_length=3,
        description="Largest shift searched per spatial axis in µm, instead of maxshift.")
    gridsize: list[PositiveInt] | None = Field(
        None, min_length=1, max_length=3, validate_default=True,
        description="Apertures per spatial axis, e.g. 8,8 (or aperture_um); at most the image's "
                    "size (after the ROI) along that axis.")
    maxshift: list[PositiveInt] | None = Field(
        None, min_length=1, max_length=3, validate_default=True,
        description="Largest shift searched per spatial axis, pixels (or maxshift_um); less "
                    "than the image's size along that axis.")
    lam: Lambda = Field(alias="lambda", description="Affine-residual penalty: a number in "
                        f"[0, {LAMBDA_MAX:g}], or [min, max] within [{LAMBDA_RANGE_MIN:g}, "
                        f"{LAMBDA_MAX:g}] spanning at least 16x, to choose it automatically in "
                        "that range (e.g. 1e-6,10).")
    overlap: NonNegativeInt | list[NonNegativeInt] = Field(
        0, description="Extra pixels on each side of each aperture (a number or one per axis).")
    normalization: Literal["pixels", "intensity"] = Field(
        "pixels", description="Mismatch denominator: valid pixel pairs or summed intensities.")
    passes: Literal[1, 2] = Field(2, description="2 = register again after warping and compose "
                                                 "(1 = one pass: faster, less accurate).")
    refine_maxshift: PositiveInt | list[PositiveInt] | None = Field(
        2, description="Shift searched by the second pass (a number or one per axis); null = "
                       "maxshift with a fully optimised first pass (the original's recipe).")
    correct_bias: bool = Field(False, description="Replace zero-shift mismatch by its neighbours "
                                                  "(camera fixed-pattern noise).")

    @field_validator("gridsize", "maxshift", mode="after")
    @classmethod
    def _one_unit(cls, value, info):
        um_field = {"maxshift": "maxshift_um", "gridsize": "aperture_um"}[info.field_name]
        if (value is None) == (info.data.get(um_field) is None):
            raise ValueError(f"give exactly one of {info.field_name} (pixels) and {um_field} "
                             "(µm)")
        return value

    _lambda_rule = field_validator("lam")(lambda_rule)


def grid(params: AperturesParams, image_shape) -> tuple:
    """The corner-spanning node grid of ``params.gridsize`` over an image of ``image_shape``."""
    from ..reg.deformation import nodes_for_shape

    if len(params.gridsize) != len(image_shape):
        raise ParameterError("gridsize", f"has {len(params.gridsize)} entries but the image has "
                                         f"{len(image_shape)} spatial axes (shape "
                                         f"{tuple(image_shape)})")
    return tuple(nodes_for_shape(tuple(image_shape), tuple(params.gridsize)))


# what each monitorable variable of this kind holds (the registry's `variables`)
VARIABLES = {
    "u": "node displacements, (*gridsize, N) pixels in axis order",
    "mismatch": "total penalty at the optimum",
    "lambda": "the affine-penalty weight used",
    "warped": "preprocessed frame warped by u (float32)",
    "warped0": "raw frame warped by u (float32)",
    "lambdas": "auto-lambda only: the lambdas swept",
    "datapenalty": "auto-lambda only: data penalty per swept lambda",
    "sigmoid_quality": "auto-lambda only: quality of the sigmoid fit",
}


def build(params: AperturesParams, fixed, nodes, preprocess):
    """The :class:`~blockreg.Apertures` of a job (raises ParameterError naming a params field)."""
    from ..algorithms.apertures import Apertures

    lam = tuple(float(v) for v in params.lam) if isinstance(params.lam, list) else float(params.lam)
    overlap = tuple(params.overlap) if isinstance(params.overlap, list) else params.overlap
    return Apertures(fixed, nodes, tuple(params.maxshift), lam, preprocess, overlap=overlap,
                     normalization=params.normalization, correct_bias=params.correct_bias,
                     passes=params.passes,
                     refine_maxshift=(tuple(params.refine_maxshift)
                                      if isinstance(params.refine_maxshift, list)
                                      else params.refine_maxshift))


APERTURES = register_algorithm(AlgorithmEntry(
    "apertures", AperturesParams, build, grid, variables=VARIABLES,
    summary="per-frame deformable registration by aperture mismatch (fixed or automatic lambda)",
))
