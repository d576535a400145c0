"""From a :class:`~blockreg.jobspec.JobSpec` to the things that compute: series, frames, algorithm.

The CLI, the in-process runner and the service (coordinator and Celery workers) all build a job
through :func:`plan_job`, so for the same spec they read the same pixels, preprocess them the same
way and construct the same algorithm (the one the spec names, through :mod:`blockreg.registry`):
the service's ``u`` equals the in-process result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .jobspec import JobSpec, validate_spec
from .registry import get_algorithm

__all__ = ["JobPlan", "FixedFrameError", "plan_job", "read_frame", "run_inprocess", "grid_nodes",
           "input_geometry", "build_algorithm", "known_variables"]


def _open(spec: JobSpec):
    from .io import open_series
    from .paths import check_still_inside

    # the submit stored the resolved path: a link swapped in since then must not lead out of the
    # data roots (a no-op without roots)
    check_still_inside(spec.input.path, "input.path")
    return open_series(spec.input.path, dataset=spec.input.dataset, channel=spec.input.channel)


def input_geometry(spec: JobSpec) -> tuple[int, tuple[int, ...]]:
    """Open the spec's input and return ``(number of frames, spatial shape)`` (before the ROI).

    The readers refuse an input with fewer than two spatial axes, so the shape is ``(T, *spatial)``.
    """
    shape = tuple(int(n) for n in _open(spec).shape)
    return shape[0], shape[1:]


def grid_nodes(image_shape, gridsize) -> tuple[np.ndarray, ...]:
    """Aperture-centre nodes spanning the image corners (DESIGN.md §4), as Apertures expects."""
    from .reg.deformation import nodes_for_shape

    return tuple(nodes_for_shape(tuple(image_shape), tuple(gridsize)))


def _make_preprocess(spec: JobSpec):
    from .reg.preprocess import PreprocessSNF

    # the µm sizes were converted to pixels by units.resolve_units
    return PreprocessSNF.from_dict(spec.preprocess.pixel_options())


def build_algorithm(spec: JobSpec, fixed, nodes, preprocess):
    """The algorithm the spec names, built by its registered factory.

    Raises
    ------
    ParameterError
        What the algorithm refuses, naming a field of ``spec.params``.
    """
    return get_algorithm(spec.algorithm).build(spec.params, fixed, nodes, preprocess)


def known_variables(spec: JobSpec, image_shape) -> set[str]:
    """Names the spec's algorithm can monitor, for an image of ``image_shape`` (after the ROI).

    Builds the algorithm on a blank image, so it raises what the algorithm refuses
    (:class:`~blockreg.errors.ParameterError`, naming a field of ``spec.params``).
    """
    image_shape = tuple(image_shape)
    nodes = get_algorithm(spec.algorithm).nodes(spec.params, image_shape)
    blank = np.zeros(image_shape, dtype=np.float32)
    return set(build_algorithm(spec, blank, nodes, None).declare())


class FixedFrameError(ValueError):
    """The fixed frame cannot be registered against (no finite pixel after preprocessing)."""


class SeriesRegion:
    """The region of a series a plan reads (its ``series`` and ``roi``): the frame shape and the
    names of the spatial axes.  Shared by :class:`JobPlan` and the plans of the other job kinds
    (:class:`blockreg.warpjob.WarpPlan`), which the frame machinery uses alike."""

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.roi)

    @property
    def spatial_axes(self) -> str:
        """Names of the spatial axes (e.g. ``"yx"``), from the reader when it knows them."""
        axes = getattr(self.series, "axes", None)
        if isinstance(axes, str) and len(axes) == len(self.roi) + 1:
            return axes[1:]
        from .io.base import default_axes

        return default_axes(len(self.roi))[1:]


@dataclass
class JobPlan(SeriesRegion):
    """Everything needed to register the frames of one job.

    Attributes
    ----------
    spec : JobSpec
        With every µm size converted to pixels.
    series : object
        The opened input (``blockreg.io.open_series``); frames are read lazily.
    frames : list of int
        Source time index of each output position.
    roi : tuple of slice
        Spatial region read from every frame.
    fixed_index : int
        Source time index of the fixed image.
    preprocess : PreprocessSNF
    nodes : tuple of ndarray
        The grid the algorithm's displacements live on (its registered ``nodes``).
    fixed : ndarray or None
        The preprocessed fixed image (float32), or None until :meth:`load_fixed`.
    spacing : tuple of float or None
        Voxel size in µm per spatial axis (``input.spacing_um``, else the reader's).
    from_um : dict
        The µm sizes the spec gave (``"params.maxshift_um": [...]``); ``spec`` holds them
        converted to pixels (:mod:`blockreg.units`).
    """

    spec: JobSpec
    series: Any
    frames: list[int]
    roi: tuple[slice, ...]
    fixed_index: int
    preprocess: Any
    nodes: tuple
    fixed: np.ndarray | None = field(default=None, repr=False)
    spacing: tuple | None = None
    from_um: dict = field(default_factory=dict)

    def load_fixed(self) -> np.ndarray:
        """Read and preprocess the fixed frame (float32); cached on the plan.

        Raises
        ------
        FixedFrameError
            (a ValueError naming ``fixed_index``) if no pixel of the preprocessed frame is
            finite: every aperture would be empty and every frame would fail.
        """
        if self.fixed is None:
            raw = read_frame(self, self.fixed_index)
            fixed = np.asarray(self.preprocess(raw), dtype=np.float32)
            if not np.isfinite(fixed).any():
                raise FixedFrameError(f"fixed_index: frame {self.fixed_index} has no finite pixel "
                                      "after preprocessing (all NaN/Inf); choose another frame")
            self.fixed = fixed
        return self.fixed

    def make_algorithm(self, fixed=None):
        """The job's algorithm, on ``fixed`` (default: :meth:`load_fixed`).

        Workers pass the fixed image read back from the output store, so every process registers
        against the very bytes the coordinator stored.
        """
        fixed = self.load_fixed() if fixed is None else np.asarray(fixed, dtype=np.float32)
        return build_algorithm(self.spec, fixed, self.nodes, self.preprocess)

    def declarations(self, algorithm=None) -> dict:
        """Declarations of the monitored variables only (name -> ArrayDecl)."""
        if algorithm is None:
            blank = np.zeros(self.image_shape, dtype=np.float32)
            algorithm = build_algorithm(self.spec, blank, self.nodes, self.preprocess)
        declared = algorithm.declare()
        return {name: declared[name] for name in self.spec.monitor}

    @property
    def time_step_s(self) -> float | None:
        """Seconds between consecutive output frames (the input's step times the frame step)."""
        step = getattr(self.series, "time_step_s", None)
        if step is None:
            return None
        stride = self.frames[1] - self.frames[0] if len(self.frames) > 1 else 1
        return float(step) * stride

    @property
    def image_dtype(self) -> np.dtype:
        """Pixel type of the stored registered movies (the spec's ``output.dtype``)."""
        from .store_ngff import output_dtype

        return output_dtype(self.spec.output.dtype, getattr(self.series, "dtype", np.float32))

    def store_attrs(self) -> dict:
        """Attributes of the output store (docs/internals.md, "Zarr output store")."""
        from .store import store_attributes

        spacing = None if self.spacing is None else list(self.spacing)
        extra = {"converted_from_um": self.from_um} if self.from_um else {}
        return store_attributes(self.spec.to_json(), self.frames, nodes=self.nodes,
                                axes="t" + self.spatial_axes, spacing=spacing,
                                time_step_s=self.time_step_s,
                                fixed_index=self.fixed_index,
                                roi=[[s.start, s.stop] for s in self.roi], **extra)


def plan_job(spec, *, fixed=None, check: bool = False) -> JobPlan:
    """Build the :class:`JobPlan` of a spec.

    Parameters
    ----------
    spec : JobSpec or dict
    fixed : ndarray, optional
        The preprocessed fixed image if already known (workers read it from the output store);
        otherwise it is read from the input on first use.
    check : bool
        Run the full :func:`~blockreg.jobspec.validate_spec` first (the input-dependent checks).
    """
    if not isinstance(spec, JobSpec) or check:
        spec = validate_spec(spec, check_input=check)
    if spec.kind == "warp":  # a warp job's plan has the same interface (blockreg.warpjob)
        from .warpjob import plan_warp

        return plan_warp(spec)
    if spec.kind == "optimize":  # the series solve of an existing store (blockreg.seriesjob)
        from .seriesjob import plan_optimize

        return plan_optimize(spec)
    series = _open(spec)
    shape = tuple(int(n) for n in series.shape)
    n_time, spatial = shape[0], shape[1:]
    if spec.input.roi is None:
        roi = tuple(slice(0, n) for n in spatial)
    else:
        roi = tuple(slice(int(a), int(b)) for a, b in spec.input.roi)
    frames = list(spec.frame_indices(n_time))  # clipped to the series, so bounded by it
    fixed_index = spec.fixed_index if spec.fixed_index is not None else frames[len(frames) // 2]
    image_shape = tuple(s.stop - s.start for s in roi)
    from .units import converted_fields, input_spacing, resolve_units

    spacing = input_spacing(spec, series)
    from_um = converted_fields(spec)
    spec = resolve_units(spec, spacing, image_shape)  # µm sizes -> pixels
    plan = JobPlan(spec=spec, series=series, frames=frames, roi=roi, fixed_index=fixed_index,
                   preprocess=_make_preprocess(spec),
                   nodes=get_algorithm(spec.algorithm).nodes(spec.params, image_shape),
                   spacing=spacing, from_um=from_um)
    if fixed is not None:
        plan.fixed = np.asarray(fixed, dtype=np.float32)
    return plan


def read_frame(plan: JobPlan, t: int) -> np.ndarray:
    """Read source frame ``t`` of the plan's series, cropped to the ROI (raw, not preprocessed).

    Only the ROI is read where the format allows (``reader[t, *region]``).
    """
    return np.asarray(plan.series[(int(t),) + plan.roi])


class _CroppedSeries:
    """The plan's series seen through its ROI: what :func:`blockreg.register` reads frames from."""

    def __init__(self, plan: JobPlan):
        self._plan = plan
        self.shape = (int(plan.series.shape[0]),) + plan.image_shape
        self.dtype = getattr(plan.series, "dtype", None)
        self.axes = "t" + plan.spatial_axes
        self.spacing = plan.store_attrs()["spacing"]
        self.time_step_s = plan.time_step_s

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, t):
        return read_frame(self._plan, t)


def run_inprocess(spec, out=None, workers: int = 1, progress=None) -> dict:
    """Run a job spec without the service, through :func:`blockreg.register`.

    Parameters
    ----------
    spec : JobSpec or dict
        Validated in full first.
    out : path-like, optional
        Also write the results store there (default: ``spec.output.path``; None keeps the
        results in memory only).
    workers : int
        Worker processes (1 = this process).
    progress : callable, optional
        ``progress(done, total)`` after each frame (see :func:`blockreg.register`).

    Returns
    -------
    dict of str -> ndarray
        Each monitored variable with time on axis 0, in the order of the selected frames.
    """
    from .runner import register

    plan = plan_job(spec, check=True)
    if out is None:
        out = plan.spec.output.path
    if plan.spec.kind == "warp":
        from .warpjob import run_warp

        return run_warp(plan, out)
    if plan.spec.kind == "optimize":
        from .seriesjob import run_optimize

        return run_optimize(plan, out)
    from .seriesjob import run_two_stage, series_settings

    if series_settings(plan.spec) is not None:  # frames, then the whole-series solve
        return run_two_stage(plan, _CroppedSeries(plan), out=out, workers=workers,
                             progress=progress)
    return register(_CroppedSeries(plan), plan.make_algorithm(), monitor=tuple(plan.spec.monitor),
                    out=out, workers=workers, frames=list(plan.frames), attrs=plan.store_attrs(),
                    image_dtype=plan.image_dtype, progress=progress)
