"""The job spec: one validated description of a registration job.

The same :class:`JobSpec` is accepted by the REST API (JSON), the CLI (JSON, TOML or YAML files)
and :func:`blockreg.jobs.run_inprocess`, so the service and the in-process runner compute the same
thing.  Validation happens in two layers:

1. the shape of the document (pydantic models, unknown fields rejected everywhere); ``params``
   is validated by the model that the algorithm named by ``algorithm`` registered
   (:mod:`blockreg.registry`);
2. the checks that need the input (:func:`validate_spec`): the file exists and is readable, the
   frames and ROI are in range, the algorithm accepts its parameters for the image (its
   constructor's :class:`~blockreg.errors.ParameterError` becomes ``params.<field>``), the
   monitored variables are known to the algorithm, and paths stay inside the allowed roots.

Every problem is reported as ``{"field": "dotted.path", "problem": "human sentence"}`` inside a
:class:`SpecError`, which the API turns into a 422 and the CLI into exit code 2.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from .registry import AlgorithmEntry, UnknownAlgorithm, algorithm_names, get_algorithm
from .spec_checks import check_against_input, check_paths, check_usable_paths, pydantic_errors

__all__ = [
    "SpecModel",
    "InputSpec",
    "PreprocessSpec",
    "OutputSpec",
    "JobSpec",
    "SpecError",
    "validate_spec",
    "load_spec_file",
    "DEFAULT_ALGORITHM",
]

DEFAULT_ALGORITHM = "apertures"


class SpecModel(BaseModel):
    """Base of every part of a job spec, including each algorithm's ``params`` model."""

    # Unknown fields are an error everywhere: a misspelt option must not be silently ignored.
    # Infinity (sigma_hp's default) is written as the string "Infinity" so the spec survives JSON
    # and PostgreSQL's JSON type, and is read back from it.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, ser_json_inf_nan="strings", frozen=True
    )


Sigma = Union[NonNegativeFloat, list[NonNegativeFloat]]


class InputSpec(SpecModel):
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
    spacing_um: Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]],
                          Field(min_length=1, max_length=3)] | None = Field(
        None, description="Voxel size in µm per spatial axis (one number: every axis); "
                          "overrides the file's. Converts the *_um sizes to pixels.")
    register_every: PositiveInt | None = Field(
        None, description="Register only every k-th selected frame (and the last one), for a "
                          "warp job with tinterpolate to fill the others (the subset workflow).")

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


class PreprocessSpec(SpecModel):
    """Shot-noise / filtering preprocessing (:class:`blockreg.PreprocessSNF`)."""

    bias: float = Field(0.0, allow_inf_nan=False,
                        description="Camera bias subtracted before the sqrt transform.")
    sigma_lp: Sigma = Field(0.0, description="Lowpass sigma in pixels (number or per axis; 0 = "
                            "none); at most 10 times the image's size (after the ROI) along each axis.")
    sigma_hp: Sigma = Field(math.inf, description="Highpass sigma in pixels (number or per axis; "
                            "leave it out for none); at most 10 times the image's size along each axis.")
    clamp: bool = Field(False, description="Clamp negative values after preprocessing.")
    sigma_lp_um: Sigma | None = Field(None, description="Lowpass sigma in µm, instead of sigma_lp.")
    sigma_hp_um: Sigma | None = Field(None, description="Highpass sigma in µm, instead of sigma_hp.")

    def pixel_options(self) -> dict:
        """The options of :class:`blockreg.PreprocessSNF` (``from_dict``): the pixel fields only
        (:func:`blockreg.units.resolve_units` converts the µm ones first)."""
        return self.model_dump(exclude={"sigma_lp_um", "sigma_hp_um"})

    @field_validator("sigma_lp_um", "sigma_hp_um")
    @classmethod
    def _one_unit(cls, value, info):
        pixel_field = info.field_name[:-3]
        if value is not None and info.data.get(pixel_field) != cls.model_fields[pixel_field].default:
            raise ValueError(f"give {pixel_field} (pixels) or {info.field_name} (µm), not both")
        return value


class OutputSpec(SpecModel):
    """Where the results go (default: ``$BLOCKREG_DATA_DIR/results/job-<id>.zarr``)."""

    path: str | None = Field(None, min_length=1)
    dtype: Literal["float32", "input"] = Field(
        "float32", description="Pixel type of the stored registered movies (warped, warped0): "
        "float32, or the input's integer type (rounded and clipped; float32 for a float input).")


class ResourcesSpec(SpecModel):
    """What the job's frames run on (issue 10)."""

    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: the GPU workers' queue while a GPU worker is alive, else the "
        "CPU queue (decided at submit); cpu or gpu: that queue only (a gpu job waits for a GPU "
        "worker).")


class JobSpec(SpecModel):
    """A registration job: input, algorithm, parameters, monitored variables and output.

    ``params`` depends on ``algorithm``: :meth:`model_validate` returns an instance of the
    subclass of the named algorithm (``AperturesJob`` for ``"apertures"``), whose ``params`` is
    that algorithm's registered model, and :meth:`model_json_schema` describes every registered
    algorithm (a union discriminated by ``algorithm``). Build specs with
    ``JobSpec.model_validate(data)`` (or :func:`validate_spec`), not ``JobSpec(...)``.
    """

    name: str | None = Field(None, max_length=200)
    kind: Literal["register"] = Field("register", description="What the job does: 'register' "
                                      "(this), 'warp' or 'optimize' (blockreg.jobkinds.other).")
    input: InputSpec
    algorithm: str = Field(DEFAULT_ALGORITHM, description="A registered algorithm's name.")
    fixed_index: NonNegativeInt | None = Field(
        None, description="Source time index of the fixed image (default: the middle selected frame)."
    )
    preprocess: PreprocessSpec = PreprocessSpec()
    params: SpecModel
    monitor: list[str] = Field(min_length=1, description="Variables to store per frame "
                               "(default: the algorithm's default_monitor).")
    output: OutputSpec = OutputSpec()
    resources: ResourcesSpec = ResourcesSpec()

    @classmethod
    def model_validate(cls, obj, **kwargs):
        """Validate ``obj`` as the spec of the algorithm it names (default ``"apertures"``)."""
        if cls is not JobSpec or isinstance(obj, JobSpec):
            return super().model_validate(obj, **kwargs)
        kind = obj.get("kind", "register") if isinstance(obj, dict) else "register"
        if kind != "register":  # a warp or optimize job: a model of its own, not an algorithm's
            from .jobkinds.other import kind_model

            return kind_model(kind).model_validate(obj, **kwargs)
        name = obj.get("algorithm", DEFAULT_ALGORITHM) if isinstance(obj, dict) else DEFAULT_ALGORITHM
        try:
            model = _job_model(get_algorithm(name))
        except UnknownAlgorithm as exc:
            raise ValidationError.from_exception_data("JobSpec", [{
                "type": PydanticCustomError("unknown_algorithm", str(exc)),
                "loc": ("algorithm",), "input": name}]) from None
        return model.model_validate(obj, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data, **kwargs):
        """:meth:`model_validate` of a JSON document (str or bytes)."""
        if cls is not JobSpec:
            return super().model_validate_json(json_data, **kwargs)
        return cls.model_validate(json.loads(json_data), **kwargs)

    @classmethod
    def model_json_schema(cls, by_alias=True, ref_template="#/$defs/{model}", **kwargs):
        """The JSON schema; for JobSpec itself, ``oneOf`` the variants of the registered
        algorithms, discriminated by ``algorithm`` (also when only one is registered, so that
        clients see the same shape whatever the number)."""
        if cls is not JobSpec:
            return super().model_json_schema(by_alias=by_alias, ref_template=ref_template, **kwargs)
        from pydantic.json_schema import models_json_schema

        variants = {name: _job_model(get_algorithm(name)) for name in algorithm_names()}
        refs, schema = models_json_schema([(v, "validation") for v in variants.values()],
                                          by_alias=by_alias, ref_template=ref_template, **kwargs)
        mapping = {name: refs[(model, "validation")]["$ref"] for name, model in variants.items()}
        return {"oneOf": [{"$ref": ref} for ref in mapping.values()],
                "discriminator": {"propertyName": "algorithm", "mapping": mapping},
                "$defs": schema.get("$defs", {})}

    def __reduce__(self):
        # the variants are built at run time, so pickle (process pools) by value, not by class
        return (JobSpec.model_validate, (self.to_json(),))

    @field_validator("monitor")
    @classmethod
    def _unique_monitor(cls, monitor):
        if len(set(monitor)) != len(monitor):
            raise ValueError("names must not repeat")
        return monitor

    def to_json(self) -> dict:
        """The spec as JSON-able data (aliases, Infinity as a string): what the database stores."""
        return json.loads(self.model_dump_json(by_alias=True))

    def frame_indices(self, n_time: int) -> range | list[int]:
        """Source time indices selected by ``input.frames`` in a series of ``n_time`` frames.

        A ``range`` clipped to the series: a spec may ask for ``[0, 2**70]`` before validation
        has flagged it, and a list of that would exhaust memory (or overflow) first.  With
        ``input.register_every`` (the subset workflow), the list of every k-th of those and the
        last one (:func:`blockreg.apply.select_frames`).
        """
        if self.input.frames is None:
            selected = range(n_time)
        else:
            start, stop, *step = self.input.frames
            selected = range(start, min(stop, n_time), *step)
        if self.input.register_every is None or not selected:
            return selected
        from .apply import select_frames

        return [selected[i] for i in select_frames(len(selected), every=self.input.register_every)]


_job_models: dict[int, tuple[AlgorithmEntry, type[JobSpec]]] = {}


def _job_model(entry: AlgorithmEntry) -> type[JobSpec]:
    """The JobSpec subclass of one registered algorithm (built once per entry)."""
    cached = _job_models.get(id(entry))
    if cached is not None and cached[0] is entry:
        return cached[1]
    title = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", entry.name)) + "Job"
    default = entry.name if entry.name == DEFAULT_ALGORITHM else ...
    model = create_model(
        title, __base__=JobSpec, __doc__=f"A job of the {entry.name!r} algorithm: {entry.summary}",
        algorithm=(Literal[entry.name], Field(default, description="The algorithm's name.")),
        params=(entry.params, Field(description=f"Parameters of {entry.name!r}.")),
        monitor=(list[str], Field(list(entry.default_monitor), min_length=1,
                                  description="Variables to store per frame.")))
    _job_models[id(entry)] = (entry, model)
    return model


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
    if isinstance(data, SpecModel) and hasattr(data, "kind"):  # a JobSpec or another kind's
        spec = data
    else:
        if not isinstance(data, dict):
            raise SpecError([{"field": "spec", "problem":
                              f"must be a JSON object, got {type(data).__name__}"}])
        try:
            spec = JobSpec.model_validate(data)
        except ValidationError as exc:
            raise SpecError(pydantic_errors(exc)) from None
    if not isinstance(spec, JobSpec):  # warp, optimize: their own checks
        return spec.validate_against(allowed_roots=allowed_roots, check_input=check_input,
                                     absolute_paths=absolute_paths)
    errors: list[dict] = []
    check_usable_paths(spec, errors)
    if errors:  # every later check resolves these paths
        raise SpecError(errors)
    if absolute_paths:
        for field, value in (("input.path", spec.input.path), ("output.path", spec.output.path)):
            if value is not None and not Path(value).expanduser().is_absolute():
                errors.append({"field": field, "problem": f"{value!r} must be an absolute path"})
    check_paths(spec, allowed_roots, errors)
    if check_input and not errors:
        check_against_input(spec, errors)
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
