"""Core benchmark: blockreg's registration stages and throughput, side by side with suite2p.

One run measures, on the same synthetic movies with known displacements (``blockreg.synthetic``):

* blockreg, per frame: the time of each stage (preprocess, mismatch, fit, optimise, warp) and the
  whole-frame throughput of ``Apertures.run_frame`` with warped output, single process;
* suite2p's non-rigid ``register_frames`` (default settings, 64-px blocks, the true template) on
  the 2-D movie and, plane by plane, on the 3-D one;
* for both, the displacement RMSE against ground truth on the dense field, a border of
  ``maxshift`` excluded;
* the peak memory of registering one frame with blockreg, in a fresh process.

Both run with the same number of threads (BLAS/OpenMP through threadpoolctl, blockreg's FFTs
through ``BLOCKREG_FFT_WORKERS``, torch through ``torch.set_num_threads``). Results are printed as Markdown and written as JSON to
``benchmarks/out/``. Run it in the peers' environment (``benchmarks/peers_env.sh``)::

    /work/peers-venv/bin/python benchmarks/bench_core.py --threads 1
    /work/peers-venv/bin/python benchmarks/bench_core.py --skip-suite2p --frames-2d 10   # quick

Without suite2p installed the peer columns are left empty.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import io
import json
import os
import pstats
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import suite2p_peer  # noqa: E402  (sibling script modules, not part of the package)
from bench_report import STAGES, machine_info, markdown  # noqa: E402

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


# ----------------------------------------------------------------------------- set-up helpers
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
    pp = blockreg.PreprocessSNF(bias=params["bias"], sigma_lp=params["sigma_lp"],
                                sigma_hp=params["sigma_hp"])
    return dict(case, name=name, movie=movie, fixed_clean=fixed_clean, u_true=u_true, nodes=nodes,
                pp=pp, fixed=pp(fixed_clean), lam=params["lam"], thresh_fac=params["thresh_fac"],
                api=blockreg)


# Registration parameters as in the core's accuracy runs (no low-pass, sigma_hp 25 px); CLI overrides.
# thresh_fac None = Apertures' default (the original's 0.5**N).
DEFAULT_PARAMS = {"bias": 100.0, "sigma_lp": 0.0, "sigma_hp": 25.0, "lam": 1e-3, "thresh_fac": None}


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


# ----------------------------------------------------------------------------- blockreg
def make_algorithm(c, passes: int = 1):
    """The ``Apertures`` algorithm for a case, with the benchmark's parameters."""
    return c["api"].Apertures(c["fixed"], c["nodes"], c["maxshift"], c["lam"], preprocess=c["pp"],
                              passes=passes, thresh_fac=c["thresh_fac"])


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


def time_stages(c, nframes: int) -> dict:
    """Seconds per frame of each stage: ``{"wall": {stage: median}, "cpu": {stage: median}}``.

    CPU time is the robust figure on a shared machine when the run is single-threaded.
    """
    run = stage_runner(c)
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    times = {k: {s: [] for s in STAGES} for k in clocks}
    for t in range(min(nframes, len(c["movie"])) + 1):   # +1: frame 0 is a warm-up
        last = {k: f() for k, f in clocks.items()}

        def checkpoint(stage):
            for k, f in clocks.items():
                now = f()
                if t:
                    times[k][stage].append(now - last[k])
                last[k] = f()

        run(c["movie"][t % len(c["movie"])], checkpoint)
    return {k: {s: float(np.median(v)) for s, v in per.items()} for k, per in times.items()}


def throughput(frames: int, walls, cpus) -> dict:
    """Frames/s from repeated timings: the best wall time (least disturbed by other processes on a
    shared machine), the median wall time, and the best CPU time (what one thread costs)."""
    return {"frames": frames, "repeats": len(walls), "seconds": min(walls),
            "fps": frames / min(walls), "fps_median": frames / float(np.median(walls)),
            "fps_cpu": frames / min(cpus)}


def run_blockreg(c, passes: int = 1, repeats: int = 1) -> dict:
    """Frames/s of ``run_frame`` with warped output, and the displacement RMSE of its ``u``."""
    alg = make_algorithm(c, passes)
    alg.prepare()
    wanted = ("u", "warped")
    alg.run_frame(c["movie"][0], 0, wanted)          # warm-up: lazy imports, FFT plans
    walls, cpus = [], []
    for _ in range(repeats):
        us = []
        t0, c0 = time.perf_counter(), time.process_time()
        for t, frame in enumerate(c["movie"]):
            us.append(np.asarray(alg.run_frame(frame, t, wanted)["u"]))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    alg.close()
    u_dense = np.stack([dense(u, c["nodes"], c["shape"]) for u in us])
    res = throughput(len(us), walls, cpus) | {
        "rmse_px": displacement_rmse(u_dense, c["u_true"], c["maxshift"]),
        "rmse_per_axis_px": rmse_per_axis(u_dense, c["u_true"], c["maxshift"])}
    if len(c["shape"]) == 3:
        res["rmse_inplane_px"] = displacement_rmse(u_dense, c["u_true"], c["maxshift"], axes=(1, 2))
    return res


def profile_blockreg(c, nframes: int, out_dir: Path) -> str:
    """cProfile of ``run_frame``; returns the top of the table sorted by own time."""
    alg = make_algorithm(c)
    alg.prepare()
    alg.run_frame(c["movie"][0], 0, ("u", "warped"))
    prof = cProfile.Profile()
    prof.enable()
    for t in range(nframes):
        alg.run_frame(c["movie"][t % len(c["movie"])], t, ("u", "warped"))
    prof.disable()
    prof.dump_stats(str(out_dir / f"profile-{c['name']}.pstats"))
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)
    return text.getvalue()


# ----------------------------------------------------------------------------- suite2p
def run_suite2p(c, threads: int, repeats: int = 1) -> dict | None:
    """suite2p on the same movie (int16, true template); 3-D movies plane by plane."""
    try:
        import torch
        settings = suite2p_peer.default_registration_settings((64, 64))
    except ImportError:
        return None
    torch.set_num_threads(threads)
    halve = float(np.max(c["movie"])) > np.iinfo(np.int16).max
    movie = suite2p_peer.to_int16(c["movie"], halve)
    ref = suite2p_peer.to_int16(c["fixed_clean"], halve)
    planes = [(movie, ref)] if movie.ndim == 3 else [(movie[:, z], ref[z]) for z in range(movie.shape[1])]
    suite2p_peer.register_movie(planes[0][0][:4], planes[0][1], settings)    # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        wall = cpu = 0.0
        fields = []
        for mov, r in planes:
            dt, dc, u = suite2p_peer.register_movie(mov, r, settings)
            wall, cpu = wall + dt, cpu + dc
            fields.append(u)
        walls.append(wall)
        cpus.append(cpu)
    if movie.ndim == 3:
        u_dense = fields[0]
    else:   # suite2p cannot move along z: its z displacement is 0
        u_yx = np.stack(fields, axis=1)
        u_dense = np.concatenate([np.zeros_like(u_yx[..., :1]), u_yx], axis=-1)
    res = throughput(len(movie), walls, cpus) | {
           "rmse_px": displacement_rmse(u_dense, c["u_true"], c["maxshift"]),
           "rmse_per_axis_px": rmse_per_axis(u_dense, c["u_true"], c["maxshift"]),
           "block_size": list(settings["block_size"]), "maxregshiftNR": settings["maxregshiftNR"]}
    if movie.ndim == 4:
        res["rmse_inplane_px"] = displacement_rmse(u_dense, c["u_true"], c["maxshift"], axes=(1, 2))
    return res


# ----------------------------------------------------------------------------- checks
def translation_check(c, shift, threads: int) -> dict:
    """Both methods on a pure translation, to prove the sign conventions before comparing.

    ``moving(x) = fixed(x - d)`` must give ``u = d`` (DESIGN.md §4).
    """
    fixed = np.asarray(c["fixed_clean"], dtype=np.float32)
    moving = np.roll(fixed, shift, axis=tuple(range(fixed.ndim)))
    movie = np.stack([moving, moving]).astype(c["movie"].dtype)
    u_true = np.broadcast_to(np.asarray(shift, np.float32), (2, *fixed.shape, fixed.ndim))
    cc = dict(c, movie=movie, u_true=u_true)
    out = {"shift": list(shift)}
    alg = make_algorithm(cc)
    alg.prepare()
    u = dense(alg.run_frame(movie[0], 0, ("u",))["u"], c["nodes"], c["shape"])
    ndim = fixed.ndim
    inner = interior(c["shape"], c["maxshift"])
    out["blockreg_median_u"] = np.median(u[inner].reshape(-1, ndim), axis=0).tolist()
    if fixed.ndim == 2:
        try:
            import torch
            torch.set_num_threads(threads)
            settings = suite2p_peer.default_registration_settings((64, 64))
        except ImportError:
            return out
        halve = float(np.max(movie)) > np.iinfo(np.int16).max
        _, _, u2 = suite2p_peer.register_movie(suite2p_peer.to_int16(movie, halve),
                                               suite2p_peer.to_int16(fixed, halve), settings)
        out["suite2p_median_u"] = np.median(u2[0][inner].reshape(-1, ndim), axis=0).tolist()
    for key in ("blockreg_median_u", "suite2p_median_u"):
        if key in out and not np.allclose(out[key], shift, atol=0.5):
            raise RuntimeError(f"sign check failed: {key}={out[key]} for a shift of {shift}")
    return out


def memory_probe(name: str, threads: int, params: dict) -> dict:
    """Peak memory of one ``run_frame`` in a fresh interpreter (so nothing else is counted)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), BLOCKREG_FFT_WORKERS=str(threads))
    cmd = [sys.executable, str(Path(__file__)), "--memory-probe", name, "--threads", str(threads),
           "--params", json.dumps(params)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory_probe_child(name: str, params: dict) -> dict:
    import resource
    import tracemalloc

    c = make_case(name, 2, seed=1, params=params)
    frame = np.array(c["movie"][1])
    del c["movie"], c["u_true"]
    alg = make_algorithm(c)
    tracemalloc.start()
    alg.prepare()
    prepare_peak = tracemalloc.get_traced_memory()[1]
    alg.run_frame(frame, 0, ("u", "warped"))          # warm caches outside the measured frame
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    alg.run_frame(frame, 1, ("u", "warped"))
    peak = tracemalloc.get_traced_memory()[1] - base
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # which stage needs the memory: peak above the memory held before the frame, stage by stage
    run = stage_runner(c)
    run(frame, lambda stage: None)
    stage_peaks = {}

    def checkpoint(stage):
        stage_peaks[stage] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()

    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    run(frame, checkpoint)
    frame_f32 = frame.size * 4
    return {"stage_peak_per_frame": {k: v / frame_f32 for k, v in stage_peaks.items()},
            "frame_shape": list(frame.shape), "frame_float32_bytes": frame_f32,
            "run_frame_peak_bytes": peak, "run_frame_peak_per_frame": peak / frame_f32,
            "prepare_peak_bytes": prepare_peak, "prepare_peak_per_frame": prepare_peak / frame_f32,
            "maxrss_growth_bytes": (rss1 - rss0) * 1024}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads for both tools")
    p.add_argument("--frames-2d", type=int, default=40)
    p.add_argument("--frames-3d", type=int, default=8)
    p.add_argument("--cases", default="2d,3d", help="comma-separated subset of: 2d,3d")
    p.add_argument("--stage-frames", type=int, default=10, help="frames timed stage by stage")
    p.add_argument("--passes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                   help="blockreg passes to measure (2 = the refinement recipe), e.g. 1 or 1,2")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per tool; the best is reported (the machine may be shared)")
    p.add_argument("--skip-suite2p", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--profile", action="store_true", help="also cProfile run_frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--params", type=json.loads, default={},
                   help=f"JSON overrides of the registration parameters {DEFAULT_PARAMS}")
    p.add_argument("--memory-probe", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    params = DEFAULT_PARAMS | args.params
    if set(params) != set(DEFAULT_PARAMS):
        raise ValueError(f"--params: unknown keys {sorted(set(params) - set(DEFAULT_PARAMS))}")
    if not args.passes or any(n not in (1, 2) for n in args.passes):
        raise ValueError(f"--passes: each must be 1 or 2, got {args.passes}")
    if args.repeats < 1:
        raise ValueError(f"--repeats: must be >= 1, got {args.repeats}")
    if args.threads < 1:
        raise ValueError(f"--threads: must be >= 1, got {args.threads}")

    # blockreg's FFTs thread through scipy.fft's `workers`, which it reads from this variable
    os.environ["BLOCKREG_FFT_WORKERS"] = str(args.threads)
    with threadpool_limits(args.threads):
        if args.memory_probe:
            print(json.dumps(_memory_probe_child(args.memory_probe, params)))
            return {}
        args.out.mkdir(parents=True, exist_ok=True)
        results = {"machine": machine_info(args.threads), "cases": {}}
        frames = {"2d": args.frames_2d, "3d": args.frames_3d}
        for name in args.cases.split(","):
            if name not in CASES:
                raise ValueError(f"--cases: unknown case {name!r}; choose from {sorted(CASES)}")
            print(f"[{name}] generating {frames[name]} frames of {CASES[name]['shape']}", flush=True)
            c = make_case(name, frames[name], args.seed, params)
            shift = (3, -5) if name == "2d" else (1, 3, -5)
            r = {"params": {k: list(CASES[name][k]) for k in ("shape", "gridsize", "maxshift")}
                 | {"motion": CASES[name]["motion"]}
                 | params | {"frames": frames[name], "seed": args.seed}}
            r["sign_check"] = translation_check(c, shift, args.threads)
            print(f"[{name}] sign check {r['sign_check']}", flush=True)
            r["stages_s"] = time_stages(c, args.stage_frames)
            for passes in args.passes:
                key = "blockreg" if passes == 1 else f"blockreg_passes{passes}"
                r[key] = run_blockreg(c, passes, args.repeats) | {"passes": passes}
                print(f"[{name}] {key} {r[key]}", flush=True)
            if not args.skip_suite2p:
                r["suite2p"] = run_suite2p(c, args.threads, args.repeats)
                print(f"[{name}] suite2p {r['suite2p']}", flush=True)
            if not args.skip_memory:
                r["memory"] = memory_probe(name, args.threads, params)
            if args.profile:
                r["profile_top"] = profile_blockreg(c, min(args.stage_frames, len(c["movie"])),
                                                    args.out)
                print(r["profile_top"], flush=True)
            results["cases"][name] = r
    results["loadavg_at_end"] = list(os.getloadavg())
    table = markdown(results)
    print(table)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for path in (args.out / f"core-{stamp}.json", args.out / "core-latest.json"):
        path.write_text(json.dumps(results | {"markdown": table}, indent=2))
    print(f"wrote {args.out / f'core-{stamp}.json'}")
    return results


if __name__ == "__main__":
    main()
