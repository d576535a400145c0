"""The job spec: one validated description of a registration job.

The same :class:`JobSpec` is accepted by the REST API (JSON), the CLI (JSON, TOML or YAML files)
and :func:`blockreg.jobs.run_inprocess`, so the service and the in-process runner compute the same
thing.  Validation happens in two layers:

1. the shape of the document (pydantic models, unknown fields rejected everywhere);
2. the checks that need the input (:func:`validate_spec`): the file exists and is readable, the
   grid and shift limits fit the image, the frames and ROI are in range, the monitored variables
   are known to the algorithm, and paths stay inside the allowed roots.

Every problem is reported as ``{"field": "dotted.path", "problem": "human sentence"}`` inside a
:class:`SpecError`, which the API turns into a 422 and the CLI into exit code 2.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "InputSpec",
    "PreprocessSpec",
    "ParamsSpec",
    "OutputSpec",
    "JobSpec",
    "SpecError",
    "validate_spec",
    "load_spec_file",
    "DEFAULT_MONITOR",
]

DEFAULT_MONITOR = ("u", "mismatch")


class _Strict(BaseModel):
    # Unknown fields are an error everywhere: a misspelt option must not be silently ignored.
    # Infinity (sigma_hp's default) is written as the string "Infinity" so the spec survives JSON
    # and PostgreSQL's JSON type, and is read back from it.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, ser_json_inf_nan="strings", frozen=True
    )


Sigma = Union[NonNegativeFloat, list[NonNegativeFloat]]


class InputSpec(_Strict):
    """Where the frames come from."""

    path: str = Field(min_length=1, description="Input series (TIFF, Zarr, HDF5, ...).")
    dataset: str | None = Field(None, description="Dataset/array inside the file, if any.")
    channel: NonNegativeInt | None = Field(None, description="Channel to register.")
    roi: list[Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]] | None = Field(
        None, description="Region of interest: one [start, stop) per spatial axis."
    )
    frames: Annotated[list[int], Field(min_length=2, max_length=3)] | None = Field(
        None, description="Source frames as [start, stop] or [start, stop, step], like range()."
    )

    @field_validator("roi")
    @classmethod
    def _roi_ordered(cls, roi):
        if roi is not None:
            for axis, (start, stop) in enumerate(roi):
                if stop <= start:
                    raise ValueError(f"axis {axis}: stop ({stop}) must be greater than start ({start})")
        return roi

    @field_validator("frames")
    @classmethod
    def _frames_range(cls, frames):
        if frames is not None:
            start, stop = frames[0], frames[1]
            step = frames[2] if len(frames) == 3 else 1
            if start < 0 or stop < 0:
                raise ValueError("start and stop must be non-negative")
            if step < 1:
                raise ValueError("step must be at least 1")
            if stop <= start:
                raise ValueError(f"stop ({stop}) must be greater than start ({start})")
        return frames


class PreprocessSpec(_Strict):
    """Shot-noise / filtering preprocessing (:class:`blockreg.PreprocessSNF`)."""

    bias: float = Field(0.0, allow_inf_nan=False,
                        description="Camera bias subtracted before the sqrt transform.")
    sigma_lp: Sigma = Field(0.0, description="Lowpass sigma in pixels (number or per axis).")
    sigma_hp: Sigma = Field(math.inf, description="Highpass sigma in pixels (number or per axis).")
    clamp: bool = Field(False, description="Clamp negative values after preprocessing.")


Lambda = Union[
    Annotated[float, Field(ge=0, allow_inf_nan=False)],
    Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], Field(min_length=2, max_length=2)],
]


class ParamsSpec(_Strict):
    """Parameters of the aperture algorithm."""

    gridsize: list[PositiveInt] = Field(min_length=1, max_length=3,
                                        description="Aperture grid, one count per spatial axis.")
    maxshift: list[PositiveInt] = Field(min_length=1, max_length=3,
                                           description="Largest shift searched, per spatial axis.")
    lam: Lambda = Field(alias="lambda", description="Affine-residual penalty: a number >= 0, "
                        "or [min, max] to choose it automatically in that range.")
    overlap: NonNegativeInt | list[NonNegativeInt] = Field(0, description="Aperture overlap (pixels).")
    normalization: Literal["pixels", "intensity"] = "pixels"
    passes: Literal[1, 2] = 1
    correct_bias: bool = False

    @field_validator("lam")
    @classmethod
    def _lambda_range(cls, lam):
        if isinstance(lam, list) and not lam[0] < lam[1]:
            raise ValueError(f"range [min, max] needs min < max, got {lam}")
        # The algorithm's own rule (e.g. an auto-lambda range must span at least 4 steps of 2x),
        # applied here so a bad value is a 422 naming params.lambda, not an error at planning.
        from .algorithms.apertures import check_lambda

        try:
            check_lambda(lam)
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("lam: ")) from None
        return lam

    @model_validator(mode="after")
    def _same_ndim(self):
        if len(self.maxshift) != len(self.gridsize):
            raise ValueError(
                f"maxshift has {len(self.maxshift)} entries but gridsize has {len(self.gridsize)}"
            )
        return self


class OutputSpec(_Strict):
    """Where the results go (default: ``$BLOCKREG_DATA_DIR/results/job-<id>.zarr``)."""

    path: str | None = Field(None, min_length=1)


class JobSpec(_Strict):
    """A registration job: input, algorithm, parameters, monitored variables and output."""

    name: str | None = Field(None, max_length=200)
    input: InputSpec
    algorithm: Literal["apertures"] = "apertures"
    fixed_index: NonNegativeInt | None = Field(
        None, description="Source time index of the fixed image (default: the middle selected frame)."
    )
    preprocess: PreprocessSpec = PreprocessSpec()
    params: ParamsSpec
    monitor: list[str] = Field(list(DEFAULT_MONITOR), min_length=1)
    output: OutputSpec = OutputSpec()

    @field_validator("monitor")
    @classmethod
    def _unique_monitor(cls, monitor):
        if len(set(monitor)) != len(monitor):
            raise ValueError("names must not repeat")
        return monitor

    def to_json(self) -> dict:
        """The spec as JSON-able data (aliases, Infinity as a string): what the database stores."""
        return json.loads(self.model_dump_json(by_alias=True))

    def frame_indices(self, n_time: int) -> range:
        """Source time indices selected by ``input.frames`` in a series of ``n_time`` frames.

        A ``range`` clipped to the series: a spec may ask for ``[0, 2**70]`` before validation
        has flagged it, and a list of that would exhaust memory (or overflow) first.
        """
        if self.input.frames is None:
            return range(n_time)
        start, stop, *step = self.input.frames
        return range(start, min(stop, n_time), *step)


class SpecError(ValueError):
    """A job spec failed validation.

    Attributes
    ----------
    errors : list of dict
        ``{"field": "dotted.path", "problem": "..."}``, one per problem found.
    """

    def __init__(self, errors: list[dict]):
        self.errors = list(errors)
        summary = "; ".join(f"{e['field']}: {e['problem']}" for e in self.errors)
        super().__init__(f"invalid job spec: {summary}")


def _pydantic_errors(exc: ValidationError) -> list[dict]:
    errors = []
    for err in exc.errors():
        # union members add their type name to the location ("lambda.float"): drop those
        loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and _is_type_tag(p))]
        field = ".".join(loc) or "spec"
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown field"
        elif problem.startswith("Value error, "):
            problem = problem[len("Value error, "):]
        errors.append({"field": field, "problem": problem})
    # a union reports one error per member ("not >= 0", "not a list"): one entry per field
    merged: dict[str, list[str]] = {}
    for e in errors:
        problems = merged.setdefault(e["field"], [])
        if e["problem"] not in problems:
            problems.append(e["problem"])
    return [{"field": f, "problem": "; or ".join(p)} for f, p in merged.items()]


def _is_type_tag(part: str) -> bool:
    return part in {"float", "int", "str", "bool", "list", "constrained-float", "constrained-int"} or (
        part.startswith(("list[", "function-", "constrained-"))
    )


def _inside(path: Path, roots) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _check_usable_paths(spec: JobSpec, errors: list[dict]) -> None:
    # "~nosuchuser/x" makes expanduser raise RuntimeError and a NUL byte makes every os call
    # raise ValueError: both are the client's mistake, to be named, not a crash later on
    for field, value in (("input.path", spec.input.path), ("output.path", spec.output.path)):
        if value is None:
            continue
        try:
            Path(value).expanduser().resolve()
        except RuntimeError:
            errors.append({"field": field, "problem": f"{value!r}: cannot expand '~' (no such user)"})
        except (ValueError, OSError) as exc:
            errors.append({"field": field, "problem": f"{value!r} is not a usable path: {exc}"})


def _check_paths(spec: JobSpec, allowed_roots, errors: list[dict]) -> None:
    if allowed_roots is None:
        return
    roots = [Path(r).expanduser().resolve() for r in allowed_roots if str(r)]
    checks = [("input.path", spec.input.path)]
    if spec.output.path is not None:
        checks.append(("output.path", spec.output.path))
    for field, value in checks:
        if not _inside(Path(value).expanduser().resolve(), roots):
            errors.append({"field": field, "problem": f"{value} is outside the allowed roots"})


def _check_against_input(spec: JobSpec, errors: list[dict]) -> None:
    # local imports: these pull in the readers and the algorithm stack, which the shape check and
    # the OpenAPI document must not need
    from .jobs import input_geometry, known_variables

    path = Path(spec.input.path).expanduser()
    if not path.exists():
        errors.append({"field": "input.path", "problem": f"{spec.input.path} does not exist"})
        return
    try:
        n_time, spatial = input_geometry(spec)
    except Exception as exc:  # noqa: BLE001 - any reader failure means "cannot be read"
        field = "input.dataset" if spec.input.dataset and "dataset" in str(exc) else "input.path"
        errors.append({"field": field, "problem": f"cannot be read: {exc}"})
        return
    ndim = len(spatial)
    roi = spec.input.roi
    if roi is not None:
        if len(roi) != ndim:
            errors.append({"field": "input.roi", "problem":
                           f"has {len(roi)} ranges but the image has {ndim} spatial axes"})
            return
        for axis, ((start, stop), n) in enumerate(zip(roi, spatial)):
            if stop > n:
                errors.append({"field": f"input.roi.{axis}", "problem":
                               f"[{start}, {stop}) exceeds the image size {n} along axis {axis}"})
        if any(e["field"].startswith("input.roi") for e in errors):
            return
        spatial = tuple(stop - start for start, stop in roi)
    params = spec.params
    for name, values in (("gridsize", params.gridsize), ("maxshift", params.maxshift)):
        if len(values) != ndim:
            errors.append({"field": f"params.{name}", "problem":
                           f"has {len(values)} entries but the image has {ndim} spatial axes "
                           f"(shape {tuple(spatial)})"})
    if len(params.gridsize) == ndim:
        for axis, (g, m, n) in enumerate(zip(params.gridsize, params.maxshift, spatial)):
            if g > n:
                errors.append({"field": f"params.gridsize.{axis}", "problem":
                               f"{g} apertures exceed the image size {n} along axis {axis}"})
            if m >= n:
                errors.append({"field": f"params.maxshift.{axis}", "problem":
                               f"{m} must be smaller than the image size {n} along axis {axis}"})
    if isinstance(params.overlap, list) and len(params.overlap) != ndim:
        errors.append({"field": "params.overlap", "problem":
                       f"has {len(params.overlap)} entries but the image has {ndim} spatial axes"})
    elif len(params.gridsize) == ndim:
        per_axis = isinstance(params.overlap, list)
        overlaps = params.overlap if per_axis else [params.overlap] * ndim
        for axis, (g, o, n) in enumerate(zip(params.gridsize, overlaps, spatial)):
            width = (n - 1) / (g - 1) + 2 * o if g > 1 else n
            if width > n:
                errors.append({"field": "params.overlap" + (f".{axis}" if per_axis else ""),
                               "problem": f"makes apertures {width:g} px wide along axis {axis}, "
                                          f"wider than the image ({n})"})
                if not per_axis:  # one number: one error
                    break
    for name in ("sigma_lp", "sigma_hp"):
        value = getattr(spec.preprocess, name)
        if isinstance(value, list) and len(value) != ndim:
            errors.append({"field": f"preprocess.{name}", "problem":
                           f"has {len(value)} entries but the image has {ndim} spatial axes"})
    frames = spec.input.frames
    if spec.fixed_index is not None and spec.fixed_index >= n_time:
        errors.append({"field": "fixed_index", "problem":
                       f"{spec.fixed_index} is beyond the {n_time} frames of the input"})
    frames = spec.input.frames
    if frames is not None and frames[1] > n_time:
        errors.append({"field": "input.frames", "problem":
                       f"stop {frames[1]} is beyond the {n_time} frames of the input"})
        return
    if not spec.frame_indices(n_time) and not any(e["field"] == "input.frames" for e in errors):
        errors.append({"field": "input.frames", "problem": "selects no frames"})
    if errors:
        return
    try:
        known = known_variables(spec, spatial)
    except ValueError as exc:  # the algorithm refused its parameters: report, never a 500
        errors.append({"field": "params", "problem": str(exc)})
        return
    for i, name in enumerate(spec.monitor):
        if name not in known:
            errors.append({"field": f"monitor.{i}", "problem":
                           f"unknown variable {name!r}; known: {', '.join(sorted(known))}"})
    if spec.output.path is not None and Path(spec.output.path).expanduser().exists():
        errors.append({"field": "output.path", "problem":
                       f"{spec.output.path} already exists; choose a new path"})


def validate_spec(data: Any, *, allowed_roots=None, check_input: bool = True,
                  absolute_paths: bool = False) -> JobSpec:
    """Validate a job spec completely.

    Parameters
    ----------
    data : dict or JobSpec
        The spec document (as parsed from JSON/TOML/YAML) or an already-built spec.
    allowed_roots : sequence of path-like, optional
        Input and output paths must resolve inside one of these folders.  ``None`` (the
        single-user default) allows any path.
    check_input : bool
        Also open the input and check the spec against its shape (the submit-time checks).
    absolute_paths : bool
        Require absolute input and output paths (a server's working directory means nothing to
        the client that submits; the CLI makes its paths absolute before submitting).

    Returns
    -------
    JobSpec

    Raises
    ------
    SpecError
        With one ``{"field", "problem"}`` entry per problem found.
    """
    if isinstance(data, JobSpec):
        spec = data
    else:
        if not isinstance(data, dict):
            raise SpecError([{"field": "spec", "problem":
                              f"must be a JSON object, got {type(data).__name__}"}])
        try:
            spec = JobSpec.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_pydantic_errors(exc)) from None
    errors: list[dict] = []
    _check_usable_paths(spec, errors)
    if errors:  # every later check resolves these paths
        raise SpecError(errors)
    if absolute_paths:
        for field, value in (("input.path", spec.input.path), ("output.path", spec.output.path)):
            if value is not None and not Path(value).expanduser().is_absolute():
                errors.append({"field": field, "problem": f"{value!r} must be an absolute path"})
    _check_paths(spec, allowed_roots, errors)
    if check_input and not errors:
        _check_against_input(spec, errors)
    if errors:
        raise SpecError(errors)
    return spec


def load_spec_file(path) -> dict:
    """Read a spec document from a JSON, TOML or YAML file (chosen by the extension).

    Returns the parsed document, not yet validated (pass it to :func:`validate_spec`).

    Raises
    ------
    ValueError
        If the file cannot be read or parsed, or the extension is not one of
        ``.json``, ``.toml``, ``.yaml``/``.yml``.
    """
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml", ".yaml", ".yml"):
        raise ValueError(f"path: unknown spec format {suffix!r} (use .json, .toml or .yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"path: cannot read {path}: {exc.strerror or exc}") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json/toml raise ValueError subclasses, yaml its own YAMLError
        raise ValueError(f"path: {path} is not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"path: {path} must contain a mapping at the top level")
    return data
