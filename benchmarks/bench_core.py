"""Core benchmark: blockreg's registration stages and throughput, side by side with suite2p.

One run measures, on the same synthetic movies with known displacements (``bench_cases``):

* blockreg, per frame: the time of each stage (preprocess, mismatch, fit, optimise, warp) and the
  whole-frame throughput of ``Apertures.run_frame`` with warped output, single process, for each
  configuration asked for (``--configs``: ``default`` = two passes with a 2-px refinement,
  ``one_pass``, ``two_pass_full`` = the original's two-pass recipe);
* suite2p's non-rigid ``register_frames`` (default settings, 64-px blocks, the true template) on
  the 2-D movie and, plane by plane, on the 3-D one;
* for both, the displacement RMSE against ground truth on the dense field, a border of
  ``maxshift`` excluded;
* the peak memory of registering one frame with blockreg, in a fresh process (``bench_memory``).

Both run with the same number of threads (BLAS/OpenMP through threadpoolctl, blockreg's FFTs
through ``BLOCKREG_FFT_WORKERS``, torch through ``torch.set_num_threads``). Results are printed as
Markdown and written as JSON to ``benchmarks/out/``. Run it in the peers' environment
(``benchmarks/peers_env.sh``)::

    /work/peers-venv/bin/python benchmarks/bench_core.py --threads 2 --frames-2d 100 \
        --configs default,one_pass,two_pass_full
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
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import suite2p_peer  # noqa: E402  (sibling script modules, not part of the package)
from bench_cases import (CASES, CONFIGS, DEFAULT_PARAMS, dense, displacement_rmse,  # noqa: E402,F401
                         interior, make_algorithm, make_case, rmse_per_axis, stage_runner)
from bench_memory import memory_probe  # noqa: E402
from bench_report import STAGES, machine_info, markdown  # noqa: E402



# ----------------------------------------------------------------------------- set-up helpers


# ----------------------------------------------------------------------------- blockreg
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


def run_blockreg(c, config: str = "default", repeats: int = 1) -> dict:
    """Frames/s of ``run_frame`` with warped output, and the displacement RMSE of its ``u``."""
    alg = make_algorithm(c, config)
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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP/torch threads for both tools")
    p.add_argument("--frames-2d", type=int, default=40)
    p.add_argument("--frames-3d", type=int, default=8)
    p.add_argument("--cases", default="2d,3d", help="comma-separated subset of: 2d,3d")
    p.add_argument("--stage-frames", type=int, default=10, help="frames timed stage by stage")
    p.add_argument("--configs", type=lambda v: v.split(","), default=["default", "one_pass"],
                   help=f"blockreg configurations to measure, from {sorted(CONFIGS)}")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per tool; the best is reported (the machine may be shared)")
    p.add_argument("--skip-suite2p", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--profile", action="store_true", help="also cProfile run_frame")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--params", type=json.loads, default={},
                   help=f"JSON overrides of the registration parameters {DEFAULT_PARAMS}")
    args = p.parse_args(argv)
    params = DEFAULT_PARAMS | args.params
    if set(params) != set(DEFAULT_PARAMS):
        raise ValueError(f"--params: unknown keys {sorted(set(params) - set(DEFAULT_PARAMS))}")
    if not args.configs or any(k not in CONFIGS for k in args.configs):
        raise ValueError(f"--configs: each must be one of {sorted(CONFIGS)}, got {args.configs}")
    if args.repeats < 1:
        raise ValueError(f"--repeats: must be >= 1, got {args.repeats}")
    if args.threads < 1:
        raise ValueError(f"--threads: must be >= 1, got {args.threads}")

    # blockreg's FFTs thread through scipy.fft's `workers`, which it reads from this variable
    os.environ["BLOCKREG_FFT_WORKERS"] = str(args.threads)
    with threadpool_limits(args.threads):
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
            for config in args.configs:
                key = f"blockreg_{config}"
                r[key] = run_blockreg(c, config, args.repeats) | {"config": config,
                                                                  "kwargs": CONFIGS[config]}
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
