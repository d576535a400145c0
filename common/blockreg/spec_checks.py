"""The checks behind :func:`blockreg.jobspec.validate_spec` that need more than the document.

Paths (usable, inside the allowed roots) and the input itself (readable; ROI, frames, fixed frame
and monitored names consistent with its shape; the algorithm's parameters accepted by the
algorithm for the image), plus the translation of pydantic's errors into ``{"field", "problem"}``
entries.  Each check appends to an ``errors`` list instead of raising, so one submit reports every
problem at once.

No rule of an algorithm's parameters lives here: the algorithm is built on a blank image of the
job's size, and the :class:`~blockreg.errors.ParameterError` its constructor raises is reported as
``params.<field>``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .errors import ParameterError

if TYPE_CHECKING:
    from .jobspec import JobSpec


def pydantic_errors(exc: ValidationError) -> list[dict]:
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


def check_usable_paths(spec: JobSpec, errors: list[dict]) -> None:
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


def check_paths(spec: JobSpec, allowed_roots, errors: list[dict]) -> None:
    """Inputs and outputs resolve inside the data roots (blockreg.paths); the input is readable.

    Every refusal reads :data:`blockreg.paths.REFUSED`, whether an outside file exists or not.
    """
    from .paths import REFUSED, leads_out, resolve_inside, resolve_roots

    if allowed_roots is None:
        return
    roots = resolve_roots(allowed_roots)
    found = resolve_inside(spec.input.path, roots)
    if (found is None or not os.access(found, os.R_OK)
            or leads_out(found, roots)):
        errors.append({"field": "input.path", "problem": REFUSED})
    if spec.output.path is not None and resolve_inside(spec.output.path, roots) is None:
        errors.append({"field": "output.path", "problem": REFUSED})


def check_algorithm(spec: JobSpec, image_shape, errors: list[dict]) -> set[str] | None:
    """Build the spec's algorithm for an image of ``image_shape``; return the variables it declares.

    What the algorithm refuses is appended to ``errors`` (``params.<field>``) and None returned.
    """
    from .jobs import known_variables  # pulls in the algorithm stack

    try:
        return known_variables(spec, image_shape)
    except ParameterError as exc:
        errors.append({"field": f"params.{exc.field}", "problem": exc.problem})
    except ValueError as exc:  # a rule not (yet) reported as ParameterError: a 422, never a 500
        errors.append({"field": "params", "problem": str(exc)})
    return None


def _in_pixels(spec: JobSpec, image_shape) -> JobSpec:
    from .jobs import _open
    from .units import converted_fields, input_spacing, resolve_units

    if not converted_fields(spec) and spec.input.spacing_um is None:
        return spec
    return resolve_units(spec, input_spacing(spec, _open(spec)), image_shape)


def check_against_input(spec: JobSpec, errors: list[dict]) -> None:
    # local import: the readers, which the shape check and the OpenAPI document must not need
    from .jobs import input_geometry

    path = Path(spec.input.path).expanduser()
    if not path.exists():
        errors.append({"field": "input.path", "problem": f"{spec.input.path} does not exist"})
        return
    try:
        n_time, spatial = input_geometry(spec)
    except ParameterError as exc:  # the readers name the field (input.path/.dataset/.channel)
        field = exc.field if exc.field.startswith("input.") else "input.path"
        errors.append({"field": field, "problem": f"cannot be read: {exc.problem}"})
        return
    except Exception as exc:  # noqa: BLE001 - any other reader failure means "cannot be read"
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
    try:  # sizes in µm: the checks below see them in pixels, as the workers will
        spec = _in_pixels(spec, spatial)
    except ParameterError as exc:
        errors.append({"field": exc.field, "problem": exc.problem})
        return
    for name in ("sigma_lp", "sigma_hp"):
        value = getattr(spec.preprocess, name)
        if isinstance(value, list) and len(value) != ndim:
            errors.append({"field": f"preprocess.{name}", "problem":
                           f"has {len(value)} entries but the image has {ndim} spatial axes"})
    if not any(e["field"].startswith("preprocess.") for e in errors):
        from .reg.preprocess import PreprocessSNF

        try:  # the filter widths against the (cropped) frame: the preprocessing owns the rule
            options = spec.preprocess.model_dump(exclude={"sigma_lp_um", "sigma_hp_um"})
            PreprocessSNF.from_dict(options).check_shape(spatial)
        except ParameterError as exc:
            errors.append({"field": f"preprocess.{exc.field}", "problem": exc.problem})
    if spec.fixed_index is not None and spec.fixed_index >= n_time:
        errors.append({"field": "fixed_index", "problem":
                       f"{spec.fixed_index} is beyond the {n_time} frames of the input"})
    # a selection within the input is never empty: start < stop (the shape check), stop <= T
    # (here) and T >= 1 (the readers)
    frames = spec.input.frames
    if frames is not None and frames[1] > n_time:
        errors.append({"field": "input.frames", "problem":
                       f"stop {frames[1]} is beyond the {n_time} frames of the input"})
    known = check_algorithm(spec, spatial, errors)
    if errors:
        return
    for i, name in enumerate(spec.monitor):
        if name not in known:
            errors.append({"field": f"monitor.{i}", "problem":
                           f"unknown variable {name!r}; known: {', '.join(sorted(known))}"})
    from .seriesjob import check_series  # a two-stage job's series solve (params.lambda)

    check_series(spec, len(spec.frame_indices(n_time)), errors)
    if spec.output.path is not None and Path(spec.output.path).expanduser().exists():
        errors.append({"field": "output.path", "problem":
                       f"{spec.output.path} already exists; choose a new path"})
