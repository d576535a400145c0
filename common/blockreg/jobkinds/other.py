"""Job kinds other than registration: ``"warp"`` (apply a finished job's deformations to a movie)
and ``"optimize"`` (the whole-series solve on an existing two-stage store).

A job spec's ``kind`` (default ``"register"``, :class:`blockreg.jobspec.JobSpec`) chooses its
model; :meth:`JobSpec.model_validate <blockreg.jobspec.JobSpec.model_validate>` dispatches here
for the others.  Each model owns its input-dependent checks (:meth:`WarpJob.validate_against`),
run by :func:`blockreg.jobspec.validate_spec`; the work itself is :mod:`blockreg.warpjob` and
:mod:`blockreg.seriesjob`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import (Field, NonNegativeInt, PositiveInt, ValidationError, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from ..jobspec import SpecModel
from .apertures import lambda_rule

__all__ = ["SourceSpec", "WarpInputSpec", "WarpOutputSpec", "WarpJob", "SeriesParams",
           "OptimizeJob", "KIND_MODELS", "kind_model"]


class SourceSpec(SpecModel):
    """The deformations to apply: a finished job (the service resolves its store) or a store."""

    job: PositiveInt | None = Field(None, description="Id of a finished job (service only).")
    path: str | None = Field(None, min_length=1, description="A results store holding u.")

    @model_validator(mode="after")
    def _one_of(self):
        if self.job is None and self.path is None:
            raise ValueError("give job (a finished job's id) or path (a results store)")
        return self


class WarpInputSpec(SpecModel):
    """The movie to warp; every field left out is the source job's (its input file)."""

    path: str | None = Field(None, min_length=1, description="Movie to warp (default: the one "
                                                             "the source job registered).")
    dataset: str | None = Field(None, description="Dataset/array inside the file, if any.")
    channel: NonNegativeInt | None = Field(None, description="Channel to warp (default: the "
                                                             "registered one).")


class WarpOutputSpec(SpecModel):
    """Where the registered movie goes (default ``$BLOCKREG_DATA_DIR/results/job-<id>.zarr``)."""

    path: str | None = Field(None, min_length=1)


class WarpJob(SpecModel):
    """A warp job: apply the stored ``u`` of a finished job to a movie, frame by frame.

    Without ``tinterpolate`` only the frames the source registered are warped; with it, every
    frame from the first to the last registered one, the deformations interpolated linearly in
    time (the subset workflow: register every k-th frame, warp all).
    """

    name: str | None = Field(None, max_length=200)
    kind: Literal["warp"] = Field(description="'warp'.")
    source: SourceSpec
    input: WarpInputSpec = WarpInputSpec()
    medfilt: PositiveInt | None = Field(None, description="Odd window of a running median of the "
                                                          "deformations over time, first.")
    tinterpolate: bool = Field(False, description="Fill the frames between registered ones.")
    dtype: Literal["float32", "input"] = Field(
        "float32", description="float32, or the movie's integer type (rounded and clipped).")
    output: WarpOutputSpec = WarpOutputSpec()

    @field_validator("medfilt")
    @classmethod
    def _odd(cls, medfilt):
        if medfilt is not None and medfilt % 2 == 0:
            raise ValueError(f"must be odd, got {medfilt}")
        return medfilt

    @property
    def monitor(self) -> list[str]:
        """The one array a warp job writes (the frame machinery stores ``monitor``)."""
        from ..warpjob import WARPED_ARRAY

        return [WARPED_ARRAY]

    def to_json(self) -> dict:
        import json

        return json.loads(self.model_dump_json(by_alias=True))

    def __reduce__(self):
        return (kind_model("warp").model_validate, (self.to_json(),))

    def validate_against(self, *, allowed_roots=None, check_input=True, absolute_paths=False):
        """The checks that need the files; returns the spec with the movie resolved.

        Raises
        ------
        SpecError
        """
        from ..jobspec import SpecError
        from ..warpjob import check_warp

        errors: list[dict] = []
        spec = check_warp(self, errors, allowed_roots=allowed_roots, check_input=check_input,
                          absolute_paths=absolute_paths)
        if errors:
            raise SpecError(errors)
        return spec


class SeriesParams(SpecModel):
    """The whole-series solve's parameters (as in ``"apertures_mismatch"``'s params)."""

    lam: float | list[float] = Field(alias="lambda", description=(
        "Affine-residual weight, or [min, max] for auto-lambda on lambda_frames."))
    lam_t: float | list[float] = Field(0.0, alias="lambda_t", description=(
        "Temporal smoothness weight, or [min, max] for auto-lambda_t (needs the source's Es)."))
    window: int = Field(128, ge=2, description="Frames per window.")
    window_overlap: NonNegativeInt | None = Field(
        None, description="Frames shared by consecutive windows (default max(4, window // 3)).")
    lambda_frames: list[NonNegativeInt] | None = Field(
        None, min_length=1, description="Positions auto-lambda runs on (default: 5 spread).")

    _lambda_rule = field_validator("lam", "lam_t")(lambda_rule)


class OptimizeJob(SpecModel):
    """The whole-series solve of an existing two-stage store (cs, Qs, mmis), as a job of its own:
    a new store with ``u`` for every frame (a warp job's source like any other)."""

    name: str | None = Field(None, max_length=200)
    kind: Literal["optimize"] = Field(description="'optimize'.")
    source: SourceSpec
    params: SeriesParams
    output: WarpOutputSpec = WarpOutputSpec()

    @property
    def monitor(self) -> list[str]:
        return ["lambda"]  # its one frame task chooses lambda; the windows are its phase

    def to_json(self) -> dict:
        import json

        return json.loads(self.model_dump_json(by_alias=True))

    def __reduce__(self):
        return (kind_model("optimize").model_validate, (self.to_json(),))

    def validate_against(self, *, allowed_roots=None, check_input=True, absolute_paths=False):
        """The checks that need the source store (SpecError naming the field)."""
        from ..jobspec import SpecError
        from ..seriesjob import check_optimize

        errors: list[dict] = []
        check_optimize(self, errors, allowed_roots=allowed_roots, check_input=check_input,
                       absolute_paths=absolute_paths)
        if errors:
            raise SpecError(errors)
        return self


KIND_MODELS = {"warp": WarpJob, "optimize": OptimizeJob}


def kind_model(kind):
    """The spec model of ``kind``; a ValidationError on ``kind`` when there is none."""
    try:
        return KIND_MODELS[kind]
    except (KeyError, TypeError):
        known = ", ".join(repr(k) for k in ("register", *KIND_MODELS))
        raise ValidationError.from_exception_data("JobSpec", [{
            "type": PydanticCustomError("unknown_kind", f"unknown kind {kind!r}; known: {known}"),
            "loc": ("kind",), "input": kind}]) from None
