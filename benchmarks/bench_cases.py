"""The benchmarks' data and measures: synthetic movies with known motion, blockreg's settings and
configurations, the displacement error.  Shared by ``bench_core.py`` (CPU, side by side with
suite2p) and ``bench_gpu.py``.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# The targets of issue 2: (shape, gridsize, maxshift); frame counts are set on the command line.
# The true motion (global translation + local deformation, per axis) stays inside maxshift, else no
# method restricted to that search range could find it: 2-D uses the 10 + 3 px; in 3-D the
# 24-plane axis allows only 3 px, so z gets 1.5 + 1 px and y, x 6 + 3 px.
CASES = {
    "2d": dict(shape=(512, 512), gridsize=(8, 8), maxshift=(15, 15),
               motion=dict(max_translation=10.0, max_local=3.0)),
    "3d": dict(shape=(24, 256, 256), gridsize=(4, 8, 8), maxshift=(3, 10, 10),
               motion=dict(max_translation=(1.5, 6.0, 6.0), max_local=(1.0, 3.0, 3.0))),
}


def make_case(name: str, nframes: int, seed: int, params: dict):
    """The synthetic movie of one case with its ground truth and the blockreg objects for it."""
    import blockreg
    from blockreg import synthetic

    case = CASES[name]
    # 3-D ground truth costs ~15 s a volume to generate (a fixed-point inversion of the field), so
    # movies are cached next to the results, keyed by everything that defines them.
    # The generator's source is part of the key: a cached movie from an older generator would
    # silently measure other data.
    generator = zlib.crc32(Path(synthetic.__file__).read_bytes())
    key = (f"{name}-{nframes}-{seed}-{params['bias']:g}-{json.dumps(case['motion'], sort_keys=True)}"
           f"-{generator:08x}")
    cache = HERE / "out" / "cache" / f"movie-{zlib.crc32(key.encode()):08x}.npz"
    if cache.exists():
        with np.load(cache) as z:
            movie, fixed_clean, u_true = z["movie"], z["fixed_clean"], z["u_true"]
    else:
        movie, fixed_clean, u_true = synthetic.make_movie(case["shape"], nframes, bias=params["bias"],
                                                          seed=seed, **case["motion"])
        u_true = u_true.astype(np.float32)     # as cached, so a first run and a re-run agree
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, movie=movie, fixed_clean=fixed_clean, u_true=u_true)
    nodes = tuple(np.linspace(0.0, n - 1.0, g) for n, g in zip(case["shape"], case["gridsize"]))
    # a high-pass wider than an axis is refused (blockreg.PreprocessSNF): at most the axis length
    sigma_hp = tuple(min(float(params["sigma_hp"]), n) for n in case["shape"])
    pp = blockreg.PreprocessSNF(bias=params["bias"], sigma_lp=params["sigma_lp"], sigma_hp=sigma_hp)
    return dict(case, name=name, movie=movie, fixed_clean=fixed_clean, u_true=u_true, nodes=nodes,
                pp=pp, fixed=pp(fixed_clean), lam=params["lam"], thresh_fac=params["thresh_fac"],
                api=blockreg)


# Registration parameters as in the core's accuracy runs (no low-pass, sigma_hp 25 px); CLI overrides.
# thresh_fac None = Apertures' default (the original's 0.5**N).


# Registration parameters as in the core's accuracy runs (no low-pass, sigma_hp 25 px); CLI overrides.
# thresh_fac None = Apertures' default (the original's 0.5**N).
DEFAULT_PARAMS = {"bias": 100.0, "sigma_lp": 0.0, "sigma_hp": 25.0, "lam": 1e-3, "thresh_fac": None}

# The blockreg configurations a run can compare (``--configs``): Apertures keyword arguments.
CONFIGS = {
    "default": {},                                           # two passes, 2-px refinement
    "one_pass": {"passes": 1},                               # the default before issue 10
    "two_pass_full": {"passes": 2, "refine_maxshift": None},  # the original's two-pass recipe
}


def interior(shape, maxshift):
    """Slices that drop a border of ``maxshift`` pixels along every axis."""
    return tuple(slice(m, n - m) for n, m in zip(shape, maxshift))


def displacement_rmse(u_est, u_true, maxshift, axes=None) -> float:
    """Root mean square of the displacement error vector over frames and interior pixels.

    ``u_est`` and ``u_true`` are dense fields ``(T, *shape, N)``; ``axes`` restricts the error to
    some components (e.g. the in-plane ones of a 3-D field).
    """
    u_est = np.asarray(u_est, dtype=np.float64)
    u_true = np.asarray(u_true, dtype=np.float64)
    if u_est.shape != u_true.shape:
        raise ValueError(f"u_est: shape {u_est.shape} differs from u_true's {u_true.shape}")
    inner = (slice(None), *interior(u_true.shape[1:-1], maxshift))
    diff = u_est[inner] - u_true[inner]
    if axes is not None:
        diff = diff[..., list(axes)]
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=-1))))


def rmse_per_axis(u_est, u_true, maxshift) -> list:
    """The RMSE of each displacement component (axis order), to see which axis limits accuracy."""
    return [displacement_rmse(u_est, u_true, maxshift, axes=(a,)) for a in range(u_true.shape[-1])]


def dense(u_nodes, nodes, shape) -> np.ndarray:
    """blockreg's displacement on every pixel, ``(*shape, N)``, as its warp uses it."""
    from blockreg import GridDeformation

    return np.stack(GridDeformation(np.asarray(u_nodes), nodes).field(shape), axis=-1)


def make_algorithm(c, config="default"):
    """The ``Apertures`` algorithm for a case, with the benchmark's parameters and a configuration."""
    return c["api"].Apertures(c["fixed"], c["nodes"], c["maxshift"], c["lam"], preprocess=c["pp"],
                              thresh_fac=c["thresh_fac"], **CONFIGS[config])


def stage_runner(c):
    """One frame through the stages as ``Apertures.run_frame`` chains them, calling
    ``checkpoint(stage)`` after each so a caller can time or measure it."""
    br = c["api"]
    plan = br.MismatchPlan(c["fixed"], c["gridsize"], c["maxshift"], normalization="pixels")
    ap = br.reg.AffinePenalty(c["nodes"], c["lam"])
    thresh = make_algorithm(c).thresh          # whatever threshold run_frame itself uses

    def run(frame, checkpoint):
        moving = c["pp"](frame)
        checkpoint("preprocess")
        mms = plan.compute(moving)
        checkpoint("mismatch")
        _, cs, Qs = br.reg.mms_to_fit(mms, thresh)
        mmis = br.reg.interpolate_mm(mms)
        checkpoint("fit")
        phi, _ = br.fixed_lambda(cs, Qs, c["nodes"], ap, mmis)
        checkpoint("optimise")
        br.warp(moving, phi)          # "warped" warps the preprocessed frame
        checkpoint("warp")

    return run
