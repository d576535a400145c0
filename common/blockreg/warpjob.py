"""Warp jobs: a finished job's deformations applied to a movie, one frame per task.

A warp job reads ``u`` of its source store (a finished registration, rigid or two-stage job),
optionally median-filters it over time and interpolates it to the frames between registered ones
(:func:`blockreg.apply.deformations_for_frames`), and warps each frame of the movie with
:func:`blockreg.apply.warp_frame`, the one per-frame warp of every path, so a warp job and an
in-process warp give the same bytes.  The movie may be the registered one, another channel of it
or another file with the same frame geometry; the source job's ROI is applied to it.

For the frame machinery (:mod:`blockreg.orchestrate.frames`, :mod:`blockreg.orchestrate.submit`)
a warp job looks like any job: :class:`WarpPlan` has the plan's interface and :class:`WarpFrames`
is the "algorithm" each frame task runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .algorithms.base import Algorithm, ArrayDecl
from .errors import ParameterError
from .jobs import SeriesRegion

__all__ = ["WARPED_ARRAY", "WarpPlan", "WarpFrames", "check_warp", "plan_warp", "run_warp",
           "source_geometry"]

#: The array of a warp job's store: the registered movie, one frame per chunk.
WARPED_ARRAY = "registered"


@dataclass(frozen=True)
class SourceGeometry:
    """What a warp needs from the source store."""

    nodes: tuple
    image_shape: tuple
    roi: tuple            # slices into the movie's frames
    registered: np.ndarray  # movie frame of each stored position with a finite u
    positions: np.ndarray   # those positions
    input: dict           # the source job's input section (path, dataset, channel)


def source_geometry(path) -> SourceGeometry:
    """Read the source store's nodes, frames and ROI (ParameterError on ``source.path``)."""
    from .store import open_store

    try:
        group = open_store(path, "r")
    except (ParameterError, OSError, ValueError) as exc:
        raise ParameterError("source.path", getattr(exc, "problem", str(exc))) from None
    if "u" not in group:
        raise ParameterError("source.path", f"{path} holds no u (a job that monitored u, or a "
                                            "two-stage job whose series phase has finished)")
    meta = dict(group.attrs["blockreg"])
    u = group["u"]
    if meta.get("nodes") is None:
        raise ParameterError("source.path", f"{path} records no grid nodes")
    nodes = tuple(np.asarray(n, dtype=np.float64) for n in meta["nodes"])
    frames = np.asarray(meta.get("frames", range(u.shape[0])), dtype=np.int64)
    fixed = _member(group, "fixed")
    if fixed is not None:
        image_shape = tuple(int(n) for n in fixed.shape)
    else:
        image_shape = tuple(int(round(n[-1])) + 1 if n.size > 1 else int(round(2 * n[0])) + 1
                            for n in nodes)
    roi = meta.get("roi") or [[0, n] for n in image_shape]
    finite = np.isfinite(np.asarray(u[...]).reshape(u.shape[0], -1)).all(axis=1)
    spec = meta.get("spec") or {}
    return SourceGeometry(nodes=nodes, image_shape=image_shape,
                          roi=tuple(slice(int(a), int(b)) for a, b in roi),
                          registered=frames[finite], positions=np.flatnonzero(finite),
                          # an optimize job's store keeps its source's movie as "input"
                          input=dict(spec.get("input") or meta.get("input") or {}))


def _member(group, name):
    """Array ``name`` of a store: a plain array, or an image group's full-resolution level."""
    if name not in group:
        return None
    node = group[name]
    if hasattr(node, "shape"):
        return node
    from . import store

    return store.member(group, name)


def check_warp(spec, errors, *, allowed_roots=None, check_input=True, absolute_paths=False):
    """Check a warp spec against its files; return it with the movie filled in from the source.

    Problems are appended to ``errors`` as ``{"field", "problem"}``.
    """
    def _inside(path, roots):
        return any(path == root or root in path.parents for root in roots)

    paths = [("source.path", spec.source.path), ("input.path", spec.input.path),
             ("output.path", spec.output.path)]
    if spec.source.path is None:
        errors.append({"field": "source.job", "problem": "a job id is resolved by the service "
                                                        "(submit it there, or give source.path)"})
        return spec
    roots = None if allowed_roots is None else [Path(r).expanduser().resolve()
                                                for r in allowed_roots if str(r)]
    for name, value in paths:
        if value is None:
            continue
        p = Path(value).expanduser()
        if absolute_paths and not p.is_absolute():
            errors.append({"field": name, "problem": f"{value!r} must be an absolute path"})
        elif roots is not None and not _inside(p.resolve(), roots):
            errors.append({"field": name, "problem": f"{value} is outside the allowed roots"})
    if errors or not check_input:
        return spec
    try:
        geo = source_geometry(spec.source.path)
    except ParameterError as exc:
        errors.append({"field": exc.field, "problem": exc.problem})
        return spec
    if geo.registered.size == 0:
        errors.append({"field": "source.path", "problem": "no frame of the source has a finite u"})
        return spec
    movie = {k: v for k, v in geo.input.items() if k in ("path", "dataset", "channel")}
    given = spec.input.model_dump(exclude_none=True)
    if "path" in given:  # another file: nothing of the source's input carries over
        movie = {}
    movie.update(given)
    if movie.get("path") is None:
        errors.append({"field": "input.path", "problem": "the source records no input; name one"})
        return spec
    spec = spec.model_copy(update={"input": type(spec.input).model_validate(movie)})
    if roots is not None and not _inside(Path(movie["path"]).expanduser().resolve(), roots):
        errors.append({"field": "input.path",
                       "problem": f"{movie['path']} is outside the allowed roots"})
        return spec
    try:
        shape = _open_movie(spec).shape
    except ParameterError as exc:
        field = exc.field if exc.field.startswith("input.") else "input.path"
        errors.append({"field": field, "problem": f"cannot be read: {exc.problem}"})
        return spec
    except Exception as exc:  # noqa: BLE001 - any reader failure is "cannot be read"
        errors.append({"field": "input.path", "problem": f"cannot be read: {exc}"})
        return spec
    spatial = tuple(int(n) for n in shape[1:])
    if len(spatial) != len(geo.image_shape) or any(
            s.stop > n for s, n in zip(geo.roi, spatial)) or (
            not geo.input.get("roi") and spatial != geo.image_shape):
        errors.append({"field": "input.path", "problem": f"frames of shape {spatial} do not have "
                       f"the source's geometry (image {geo.image_shape}, roi "
                       f"{[[s.start, s.stop] for s in geo.roi]})"})
    last = int(geo.registered.max())
    if last >= int(shape[0]):
        errors.append({"field": "input.path", "problem": f"has {shape[0]} frames; the source "
                                                         f"registered frames up to {last}"})
    if spec.output.path is not None and Path(spec.output.path).expanduser().exists():
        errors.append({"field": "output.path", "problem": f"{spec.output.path} already exists; "
                                                          "choose a new path"})
    return spec


def _open_movie(spec):
    from .io import open_series

    return open_series(spec.input.path, dataset=spec.input.dataset, channel=spec.input.channel)


class WarpFrames(Algorithm):
    """The per-frame "algorithm" of a warp job: warp frame ``t`` by the deformation of frame ``t``.

    Parameters
    ----------
    source : path-like
        The store holding ``u``.
    nodes : tuple of N 1-D arrays
    tindex, positions : ndarray of int
        Movie frames with a deformation and their positions in the store.
    nframes : int
        Frames of the movie (the deformations are interpolated to all of them).
    image_shape : tuple of int
    dtype : numpy dtype
        Of the output (float, or an integer type: rounded and clipped).
    medfilt : int, optional
    """

    def __init__(self, source, nodes, tindex, positions, nframes, image_shape, dtype, medfilt=None):
        self.source = str(source)
        self.nodes = tuple(np.asarray(n, dtype=np.float64) for n in nodes)
        self.tindex = np.asarray(tindex, dtype=np.int64)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.nframes = int(nframes)
        self.image_shape = tuple(int(n) for n in image_shape)
        self.dtype = np.dtype(dtype)
        self.medfilt = medfilt
        self._context = None

    def declare(self):
        return {WARPED_ARRAY: ArrayDecl(self.image_shape, self.dtype.name)}

    def describe(self):
        return {"algorithm": "WarpFrames", "source": self.source, "medfilt": self.medfilt,
                "dtype": self.dtype.name, "registered": self.tindex.tolist()}

    def prepare(self):
        if self._context is not None:
            return
        from .apply import deformations_for_frames
        from .store import open_store

        u = open_store(self.source, "r")["u"]
        us = np.asarray(u[...])[self.positions]
        self._context = deformations_for_frames(us, self.nframes, tindex=self.tindex,
                                                medfilt=self.medfilt)

    def run_frame(self, frame, t, wanted):
        from ._backend import to_host
        from .apply import warp_frame

        wanted = self.check_wanted(wanted)
        self.prepare()
        out = to_host(warp_frame(frame, self._context[int(t)], self.nodes, dtype=self.dtype))
        return {name: out for name in wanted}


@dataclass
class WarpPlan(SeriesRegion):
    """A warp job's plan, with the interface the frame machinery uses of a JobPlan."""

    spec: Any
    series: Any
    frames: list
    roi: tuple
    geometry: SourceGeometry
    fixed_index: int | None = None
    fixed: Any = field(default=None, repr=False)

    @property
    def nodes(self):
        return self.geometry.nodes

    def load_fixed(self):
        return None  # a warp registers nothing: no fixed image

    def output_dtype(self):
        movie = np.dtype(getattr(self.series, "dtype", np.float32))
        if self.spec.dtype == "input" and movie.kind in "iu":
            return movie
        return np.dtype(np.float32)

    @property
    def image_dtype(self):
        return self.output_dtype()

    def make_algorithm(self, fixed=None):
        geo = self.geometry
        return WarpFrames(self.spec.source.path, geo.nodes, geo.registered, geo.positions,
                          int(self.series.shape[0]), self.image_shape, self.output_dtype(),
                          medfilt=self.spec.medfilt)

    def declarations(self, algorithm=None):
        return (algorithm or self.make_algorithm()).declare()

    def store_attrs(self) -> dict:
        from .store import store_attributes

        spacing = getattr(self.series, "spacing", None)
        if spacing is not None:
            spacing = list(spacing)[-len(self.roi):]
        return store_attributes(self.spec.to_json(), self.frames, nodes=self.nodes,
                                axes="t" + self.spatial_axes, spacing=spacing,
                                roi=[[s.start, s.stop] for s in self.roi],
                                registered=self.geometry.registered.tolist())


def plan_warp(spec) -> WarpPlan:
    """The plan of a validated warp spec (its movie resolved by :func:`check_warp`)."""
    geo = source_geometry(spec.source.path)
    series = _open_movie(spec)
    if spec.tinterpolate:
        frames = list(range(int(geo.registered.min()), int(geo.registered.max()) + 1))
    else:
        frames = [int(t) for t in geo.registered]
    return WarpPlan(spec=spec, series=series, frames=frames, roi=geo.roi, geometry=geo)


def run_warp(plan: WarpPlan, out=None) -> dict:
    """Warp in this process (``run_inprocess`` of a warp spec); optionally write the store."""
    from .jobs import read_frame
    from .runner import _ShardWriter
    from .store import create_store

    algorithm = plan.make_algorithm()
    decls = algorithm.declare()
    warped = np.empty((len(plan.frames),) + plan.image_shape, dtype=decls[WARPED_ARRAY].dtype)
    writer = None
    if out is not None:
        group = create_store(out, len(plan.frames), decls, attrs=plan.store_attrs())
        # each shard written once, when its last frame is done (a frame at a time would rewrite
        # the shard's file once per frame); the rows are views of ``warped``
        writer = _ShardWriter(group, {WARPED_ARRAY: list(warped)}, decls)
    for position, t in enumerate(plan.frames):
        values = algorithm.run_frame(read_frame(plan, t), t, (WARPED_ARRAY,))
        warped[position] = values[WARPED_ARRAY]
        if writer is not None:
            writer.frame_done(position)
    return {WARPED_ARRAY: warped}
