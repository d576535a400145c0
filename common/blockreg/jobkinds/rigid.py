"""The ``"rigid"`` job kind: :class:`~blockreg.Rigid` (rotation + translation per frame).

The params model states the shape of the parameters; the rules that need the image (2-D or 3-D,
pyramid levels that keep the image at least 4 px) are :class:`~blockreg.Rigid`'s, reported as
``params.<field>`` by the spec checks.
"""
from __future__ import annotations

import math

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from ..errors import ParameterError
from ..jobspec import SpecModel
from ..registry import AlgorithmEntry, register_algorithm

__all__ = ["RigidParams", "RIGID"]


class RigidParams(SpecModel):
    """Parameters of rigid registration (:class:`blockreg.Rigid`)."""

    maxshift: list[PositiveFloat] = Field(min_length=1, max_length=3, description=(
        "Largest translation per spatial axis (pixels), also the initial search range."))
    maxrot: NonNegativeFloat | list[NonNegativeFloat] = Field(
        math.pi, description="Largest rotation (radians): one angle in 2-D, or one per "
                             "rotation-vector component in 3-D.")
    gridsize: list[PositiveInt] | None = Field(
        None, min_length=1, max_length=3,
        description="Nodes per spatial axis of the stored u (default 9, fewer on short axes).")
    levels: PositiveInt | None = Field(None, description="Pyramid levels (1 = full resolution "
                                                         "only; default: automatic).")
    thresh: NonNegativeFloat = Field(0.0, description="Smallest overlap energy accepted.")
    atol: PositiveFloat = Field(1e-4, description="Convergence tolerance.")


def grid(params: RigidParams, image_shape) -> tuple:
    """The nodes of the stored ``u``: ``params.gridsize`` or 9 per axis (capped by the axis)."""
    from ..algorithms.rigid import DEFAULT_NODES_PER_AXIS
    from ..reg.deformation import nodes_for_shape

    image_shape = tuple(image_shape)
    if params.gridsize is None:
        gridsize = tuple(min(DEFAULT_NODES_PER_AXIS, n) for n in image_shape)
    else:
        gridsize = tuple(params.gridsize)
        if len(gridsize) != len(image_shape):
            raise ParameterError("gridsize", f"has {len(gridsize)} entries but the image has "
                                             f"{len(image_shape)} spatial axes")
        for a, (g, n) in enumerate(zip(gridsize, image_shape)):
            if g > n:
                raise ParameterError(f"gridsize.{a}", f"{g} nodes on an axis of {n} pixels")
    return tuple(nodes_for_shape(image_shape, gridsize))


# what each monitorable variable of this kind holds (the registry's `variables`)
VARIABLES = {
    "tform": "homogeneous (N+1, N+1) matrix of the map from fixed to moving coordinates",
    "mismatch": "normalised squared difference at the result",
    "u": "node displacements of the affine map, (*gridsize, N) pixels",
    "warped": "preprocessed frame warped by the affine map (float32)",
    "warped0": "raw frame warped by the affine map (float32)",
}


def build(params: RigidParams, fixed, nodes, preprocess):
    """The :class:`~blockreg.Rigid` of a job (raises ParameterError naming a params field)."""
    from ..algorithms.rigid import Rigid

    if len(params.maxshift) != fixed.ndim:
        raise ParameterError("maxshift", f"has {len(params.maxshift)} entries but the image has "
                                         f"{fixed.ndim} spatial axes")
    maxrot = tuple(params.maxrot) if isinstance(params.maxrot, list) else params.maxrot
    return Rigid(fixed, tuple(params.maxshift), preprocess, maxrot=maxrot, nodes=nodes,
                 levels=params.levels, thresh=params.thresh, atol=params.atol)


RIGID = register_algorithm(AlgorithmEntry(
    "rigid", RigidParams, build, grid, variables=VARIABLES,
    summary="per-frame rigid registration (rotation + translation, coarse to fine)",
    default_monitor=("tform", "mismatch", "u"),
))
