"""suite2p's non-rigid registration as a benchmark peer, and its shifts as a dense displacement field.

suite2p is never a dependency of blockreg: it lives in the benchmark environment built by
``benchmarks/peers_env.sh`` and is imported lazily here. The conversion of its rigid + block shifts
to a dense field is plain NumPy so that it can be tested without suite2p installed.

Sign convention. suite2p 1.1.0 registers a frame by ``rolled = roll(frame, (-ymax, -xmax))``, i.e.
``rolled(x) = frame(x + r)``, then ``registered(x) = rolled(x + d(x))`` with ``grid_sample`` at
``x + d(x)``, where ``d`` is the block shifts upsampled bilinearly between block centres. So
``registered(x) = frame(x + r + d(x))`` and ``u = r + d`` is exactly blockreg's convention
(``warp(moving, u)(x) = moving(x + u(x))``). The benchmark checks this on a pure translation before
it measures anything.

References
----------
.. [1] Pachitariu et al., "Suite2p: beyond 10,000 neurons with standard two-photon microscopy",
   bioRxiv 061507 (2016); suite2p 1.1.0, ``suite2p/registration/register.py`` and
   ``nonrigid.py`` (``transform_data``), read for its conventions.
"""
from __future__ import annotations

import time

import numpy as np


def to_int16(a: np.ndarray, halve: bool | None = None) -> np.ndarray:
    """Camera counts as suite2p wants them (int16).

    suite2p's TIFF reader halves every uint16 movie (``im // 2``); here counts are halved only when
    int16 would overflow (``halve=None``), so small counts keep full precision (our synthetic
    movies stay below 400). Pass the movie's decision as ``halve`` when converting its template,
    so both share one mapping.
    """
    a = np.asarray(a)
    if halve is None:
        halve = bool(a.size) and float(np.nanmax(a)) > np.iinfo(np.int16).max
    if halve:
        a = a / 2
    return np.clip(np.rint(a), np.iinfo(np.int16).min, np.iinfo(np.int16).max).astype(np.int16)


def _block_centres(block_edges, nblocks_along: int, stride: int) -> np.ndarray:
    # suite2p lists blocks row-major; the centre is truncated to int exactly as transform_data does.
    edges = np.asarray(block_edges[::stride][:nblocks_along])
    return edges.mean(axis=1).astype(int)


def _upsample_axis(values: np.ndarray, centres: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Linear interpolation of block values along one axis, as ``F.interpolate(align_corners=True)``
    to ``centres.max() - centres.min()`` samples followed by replicate padding to ``length``."""
    nb = values.shape[axis]
    lo, hi = int(centres.min()), int(centres.max())
    span = hi - lo
    pix = np.arange(length)
    if nb == 1 or span <= 1:
        pos = np.zeros(length)
    else:
        # sample j of the span sits at block coordinate j*(nb-1)/(span-1); outside the span the
        # first/last sample is replicated
        pos = np.clip(pix - lo, 0, span - 1) * (nb - 1) / (span - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, nb - 1)
    i1 = np.clip(i0 + 1, 0, nb - 1)
    w = (pos - i0).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    return np.take(values, i0, axis=axis) * (1 - w) + np.take(values, i1, axis=axis) * w


def dense_field(yoff, xoff, yoff1, xoff1, yblock, xblock, nblocks, shape) -> np.ndarray:
    """suite2p's per-frame shifts as a dense displacement field in blockreg's convention.

    Parameters
    ----------
    yoff, xoff : array_like, shape (T,)
        Rigid shifts returned by ``register_frames``.
    yoff1, xoff1 : array_like, shape (T, nblocks_y * nblocks_x) or None
        Non-rigid block shifts (row-major over blocks); None for rigid-only registration.
    yblock, xblock : list of [start, stop]
        Block edges from ``suite2p.registration.nonrigid.make_blocks``.
    nblocks : (int, int)
        Number of blocks along y and x.
    shape : (int, int)
        Frame shape (Ly, Lx).

    Returns
    -------
    u : ndarray, shape (T, Ly, Lx, 2)
        ``u[t, y, x] = (u_y, u_x)`` with ``registered(x) = frame(x + u(x))``.
    """
    yoff = np.asarray(yoff, dtype=np.float64)
    xoff = np.asarray(xoff, dtype=np.float64)
    if yoff.ndim != 1 or yoff.shape != xoff.shape:
        raise ValueError("yoff/xoff: expected two 1-D arrays of equal length, "
                         f"got {yoff.shape}, {xoff.shape}")
    ly, lx = shape
    nframes = yoff.shape[0]
    u = np.empty((nframes, ly, lx, 2), dtype=np.float32)
    u[..., 0] = yoff[:, None, None]
    u[..., 1] = xoff[:, None, None]
    if yoff1 is None:
        return u
    ny, nx = nblocks
    yb = _block_centres(yblock, ny, nx)
    xb = _block_centres(xblock, nx, 1)
    for comp, shifts in enumerate((yoff1, xoff1)):
        shifts = np.asarray(shifts, dtype=np.float64)
        if shifts.shape != (nframes, ny * nx):
            raise ValueError(f"yoff1/xoff1: expected shape {(nframes, ny * nx)}, got {shifts.shape}")
        grid = shifts.reshape(nframes, ny, nx)
        up = _upsample_axis(_upsample_axis(grid, yb, ly, axis=1), xb, lx, axis=2)
        u[..., comp] += up.astype(np.float32)
    return u


def default_registration_settings(block_size=(64, 64)) -> dict:
    """suite2p's default registration settings, with the block size the benchmark compares at."""
    import suite2p

    settings = dict(suite2p.default_settings()["registration"])
    settings["block_size"] = tuple(block_size)
    return settings


def register_movie(movie_i16: np.ndarray, ref_i16: np.ndarray, settings: dict, device="cpu"):
    """Run ``register_frames`` (rigid + non-rigid, shifts applied) on an in-memory int16 movie.

    Returns ``(wall_seconds, cpu_seconds, u)`` with ``u`` the dense field of :func:`dense_field`,
    shape ``(T, Ly, Lx, 2)``; CPU time (all threads of this process) is what the run would take on
    an idle machine when it runs single-threaded. The registered frames go to a separate output
    array so the input stays untouched for the next run.
    """
    import torch
    from suite2p.registration import register

    movie_i16 = np.ascontiguousarray(movie_i16, dtype=np.int16)
    out = np.empty_like(movie_i16)
    t0, c0 = time.perf_counter(), time.process_time()
    result = register.register_frames(
        movie_i16, ref_i16.astype(np.int16), f_align_out=out,
        batch_size=settings["batch_size"], norm_frames=settings["norm_frames"],
        smooth_sigma=settings["smooth_sigma"], spatial_taper=settings["spatial_taper"],
        block_size=settings["block_size"], nonrigid=settings["nonrigid"],
        maxregshift=settings["maxregshift"], smooth_sigma_time=settings["smooth_sigma_time"],
        snr_thresh=settings["snr_thresh"], maxregshiftNR=settings["maxregshiftNR"],
        subpixel=settings["subpixel"], device=torch.device(device))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    offsets, blocks = result[3], result[4]
    yoff, xoff, _, yoff1, xoff1 = offsets[:5]
    u = dense_field(yoff, xoff, yoff1, xoff1, blocks[0], blocks[1], blocks[2], movie_i16.shape[1:])
    return wall, cpu, u
