"""Run an :class:`~blockreg.algorithms.base.Algorithm` over a movie in this process (or a small pool).

This is the original's ``RegisterDriver`` for data that fits one machine: frames are read one at a
time, registered independently, and each result is written to the Zarr store as soon as it is done
(reference §6.4).  The service runs the same algorithms through Celery instead.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import util as mp_util

import numpy as np

from .errors import ParameterError

from ._backend import to_host
from .io.base import default_axes

__all__ = ["register"]


def _frame_indices(frames, nframes):
    if frames is None:
        return list(range(nframes))
    if isinstance(frames, slice):
        return list(range(nframes))[frames]
    if isinstance(frames, (int, np.integer)):
        frames = [frames]
    try:
        indices = [int(t) for t in frames]
    except (TypeError, ValueError):
        raise ParameterError("frames", f"expected None, a slice or a sequence of ints, got "
                                       f"{frames!r}") from None
    bad = [t for t in indices if not 0 <= t < nframes]
    if bad:
        raise ParameterError("frames", f"indices {bad[:5]} outside the movie's {nframes} frames")
    if len(set(indices)) != len(indices):
        raise ParameterError("frames", "indices must not repeat")
    return indices


def _check_movie(movie):
    if not hasattr(movie, "shape") or not hasattr(movie, "__getitem__"):
        raise ParameterError("movie", "expected an array (T, *spatial) or a series reader with "
                                      ".shape and [t]")
    shape = tuple(movie.shape)
    if len(shape) < 3:
        raise ParameterError("movie", f"expected (T, *spatial) with at least 2 spatial axes, got "
                                      f"shape {shape}")
    if shape[0] < 1:
        raise ParameterError("movie", "has no frames")
    return shape


def _check_monitor(algorithm, monitor):
    monitor = algorithm.check_wanted(monitor)
    declared = algorithm.declare()
    if not monitor:
        raise ParameterError("monitor", f"name at least one of {sorted(declared)}")
    return monitor, {name: declared[name] for name in monitor}


def _store_attrs(movie, algorithm, frames, attrs):
    from .store import store_attributes

    axes = movie.axes if hasattr(movie, "axes") else default_axes(len(movie.shape) - 1)
    meta = store_attributes(algorithm.describe(), frames, nodes=getattr(algorithm, "nodes", None),
                            axes=axes, spacing=getattr(movie, "spacing", None),
                            time_step_s=getattr(movie, "time_step_s", None))
    meta.update(attrs or {})
    return meta


# --- process pool: one algorithm copy per process, prepared once -------------------------------

_worker_algorithm = None


def _init_worker(algorithm):
    global _worker_algorithm
    _worker_algorithm = algorithm
    algorithm.prepare()
    # this copy belongs to the pool process: close it when the process exits
    mp_util.Finalize(None, algorithm.close, exitpriority=10)


def _run_in_worker(frame, t, monitor):
    result = _worker_algorithm.run_frame(frame, t, monitor)
    # results cross the process boundary: CuPy arrays must come back as NumPy
    return {name: to_host(v) for name, v in result.items()}


def register(movie, algorithm, *, monitor=("u", "mismatch"), out=None, workers=1, frames=None,
             attrs=None, image_dtype=None, progress=None):
    """Register every frame of ``movie`` with ``algorithm``.

    Parameters
    ----------
    movie : ndarray or series reader
        ``(T, *spatial)``; anything with ``.shape`` and ``movie[t]`` (e.g. from
        :func:`blockreg.open_series`).  Frames are read one at a time, never the whole movie.
    algorithm : Algorithm
        E.g. :class:`blockreg.Apertures`.  It is prepared here if needed and never closed (the
        caller owns it); pool processes get their own copies, which they close on exit.
    monitor : sequence of str
        Variables to return (and store); must be declared by ``algorithm.declare()``.
    out : str or os.PathLike, optional
        Create a Zarr results store there (see :mod:`blockreg.store`) and write each frame as soon
        as it is done.  An existing path is refused.
    workers : int
        1 runs in this process; more uses a spawn-context process pool of that size.
    frames : slice or sequence of int, optional
        Source time indices to register (default: all), in output order.
    attrs : dict, optional
        Extra store attributes (under ``"blockreg"``), e.g. ``fixed_index``.
    image_dtype : numpy.dtype-like, optional
        Pixel type of the stored ``warped``/``warped0`` (default float32; an integer type is
        rounded and clipped).  The returned arrays keep the algorithm's values.
    progress : callable, optional
        Called as ``progress(done, total)`` after each frame (in this process).

    Returns
    -------
    dict of str -> ndarray
        One array per monitored variable, time on axis 0 (in the order of ``frames``).
    """
    shape = _check_movie(movie)
    indices = _frame_indices(frames, shape[0])
    if not indices:
        raise ParameterError("frames", "selects no frames")
    monitor, decls = _check_monitor(algorithm, monitor)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ParameterError("workers", f"must be a positive integer, got {workers!r}")

    results = {name: [None] * len(indices) for name in monitor}
    writer = None
    if out is not None:
        from .store import create_store

        fixed = getattr(algorithm, "fixed", None)
        axes = getattr(movie, "axes", None)
        group = create_store(
            out, len(indices), decls, attrs=_store_attrs(movie, algorithm, indices, attrs),
            fixed=None if fixed is None else to_host(fixed),
            spatial_axes=None if axes is None else axes[1:], image_dtype=image_dtype,
        )
        writer = _ShardWriter(group, results, decls)
    done = 0

    def collect(position, result):
        nonlocal done
        missing = [name for name in monitor if name not in result]
        if missing:
            raise RuntimeError(f"{type(algorithm).__name__}.run_frame did not return {missing}")
        result = {name: to_host(result[name]) for name in monitor}
        for name in monitor:
            results[name][position] = result[name]
        if writer is not None:
            writer.frame_done(position)
        done += 1
        if progress is not None:
            progress(done, len(indices))

    if workers == 1:
        algorithm.prepare()
        for position, t in enumerate(indices):
            # the frame goes through as read: a CuPy movie's frame stays on the device
            collect(position, algorithm.run_frame(movie[t], t, monitor))
    else:
        _run_pool(movie, algorithm, indices, monitor, int(workers), collect)

    return {
        name: np.stack([np.asarray(v, dtype=decls[name].dtype) for v in values])
        for name, values in results.items()
    }


class _ShardWriter:
    """Writes each shard of the store once, from this process, when its last frame is done.

    The results are kept in memory anyway (they are returned), so holding a shard's frames costs
    nothing extra, and each shard file is written in one go by one process (the pool processes
    only compute): never a partial-shard race, never a shard rewritten frame after frame.
    """

    def __init__(self, group, results, decls):
        self.group, self.results, self.decls = group, results, decls
        self.nframes = len(next(iter(results.values())))
        self.shard = int(group.attrs["blockreg"]["shard_frames"])
        self.missing = {}

    def frame_done(self, position):
        first = position - position % self.shard
        stop = min(first + self.shard, self.nframes)
        left = self.missing.setdefault(first, stop - first) - 1
        self.missing[first] = left
        if left == 0:
            from .store import write_frames

            del self.missing[first]
            write_frames(self.group, first, {
                name: np.stack([np.asarray(v, dtype=self.decls[name].dtype)
                                for v in values[first:stop]])
                for name, values in self.results.items()})


def _run_pool(movie, algorithm, indices, monitor, workers, collect):
    context = multiprocessing.get_context("spawn")
    # keep a few frames in flight per process: enough to hide reading, never the whole movie
    max_pending = 2 * workers
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(algorithm,)) as pool:
        pending = {}
        queue = list(enumerate(indices))[::-1]
        try:
            while queue or pending:
                while queue and len(pending) < max_pending:
                    position, t = queue.pop()
                    # frames are pickled to the pool processes: they must be host arrays
                    future = pool.submit(_run_in_worker, to_host(movie[t]), t, monitor)
                    pending[future] = position
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    collect(pending.pop(future), future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise
