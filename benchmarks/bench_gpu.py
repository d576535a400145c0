"""GPU benchmark (issue 10): blockreg on CuPy per stage and end to end, the CPU and suite2p's GPU
registration on the same input, in the same run.

Cases:

* ``2d``: 512x512 synthetic two-photon frames with known motion (``blockreg.synthetic``, as
  ``bench_core.py``), grid 8x8, maxshift 15, the default two passes; ``--frames-2d`` frames cycle
  through ``--distinct-2d`` generated ones.
* ``3d``: the original's production size, a 60x1080x1120 volume (NumPy order), grid (13, 24, 24),
  maxshift (3, 30, 30). The volume is a smooth random texture made on the device (the synthetic
  movie generator would take minutes at this size) and each moving volume is it translated by a
  known sub-pixel shift plus noise, so the error is measured against a known displacement.

Printed and written as JSON (``--out``, default ``$OUT/bench_gpu.json`` when ``OUT`` is set):
frames/s per stage (device-synchronised wall time) and end to end (``Apertures.run_frame`` from a
host frame to host ``u`` and ``warped``), peak device memory (CuPy's pool high-water mark and the
device's used memory), the CPU's frames/s and error on the same frames, and suite2p's
``register_frames`` on torch CUDA (2-D; planes of the volume in 3-D) when suite2p is installed.

    python benchmarks/bench_gpu.py                 # both cases, ~3 minutes on one H200
    python benchmarks/bench_gpu.py --cases 2d --frames-2d 500 --skip-cpu
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

STAGES = ("preprocess", "mismatch", "fit", "optimise", "warp")
PRODUCTION = dict(shape=(60, 1080, 1120), gridsize=(13, 24, 24), maxshift=(3, 30, 30))


def _sync(cp):
    cp.cuda.Device().synchronize()


class DeviceMemory:
    """High-water marks of CuPy's memory pool and of the device's used memory."""

    def __init__(self, cp):
        self.cp = cp
        self.pool = cp.get_default_memory_pool()
        self.base_used = self._used()
        self.peak_pool = 0
        self.peak_used = 0

    def _used(self):
        free, total = self.cp.cuda.runtime.memGetInfo()
        return total - free

    def sample(self):
        self.peak_pool = max(self.peak_pool, self.pool.total_bytes())
        self.peak_used = max(self.peak_used, self._used() - self.base_used)

    def report(self):
        return {"pool_peak_gib": self.peak_pool / 2**30, "device_used_peak_gib": self.peak_used / 2**30}


def _apertures(api, fixed, nodes, maxshift, pp, **kw):
    return api.Apertures(fixed, nodes, maxshift, 1e-3, preprocess=pp, **kw)


def stage_times(cp, api, fixed_d, nodes, maxshift, pp, frames, passes=1):
    """Median device-synchronised seconds of each stage of one pass (as ``run_frame`` chains them)."""
    from blockreg import reg

    alg = _apertures(api, fixed_d, nodes, maxshift, pp)
    plan = reg.MismatchPlan(fixed_d, alg.gridsize, maxshift)
    ap = reg.AffinePenalty(nodes, 1e-3)
    times = {s: [] for s in STAGES}
    for i, frame in enumerate(frames):
        raw = cp.asarray(frame)
        _sync(cp)
        t = time.perf_counter()
        marks = []

        def mark(stage):
            _sync(cp)
            marks.append((stage, time.perf_counter()))

        moving = pp(raw)
        mark("preprocess")
        mms = plan.compute(moving)
        mark("mismatch")
        _, cs, Qs = reg.mms_to_fit(mms, alg.thresh)
        mmis = reg.interpolate_mm(mms)
        mark("fit")
        phi, _ = reg.fixed_lambda(cs, Qs, nodes, ap, mmis)
        mark("optimise")
        api.warp(moving, phi)
        mark("warp")
        if i:                                    # frame 0 warms up (plans, kernels, constants)
            for stage, now in marks:
                times[stage].append(now - t)
                t = now
    return {s: float(np.median(v)) for s, v in times.items() if v}


def end_to_end(api, fixed, nodes, maxshift, pp, frames, nframes, wanted=("u", "warped"),
               memory=None, **kw):
    """Frames/s of ``run_frame`` over ``nframes`` (cycling ``frames``) and the ``u`` of each."""
    alg = _apertures(api, fixed, nodes, maxshift, pp, **kw)
    alg.prepare()
    alg.run_frame(frames[0], 0, wanted)                       # warm-up
    us = []
    t0 = time.perf_counter()
    for t in range(nframes):
        us.append(alg.run_frame(frames[t % len(frames)], t, wanted)["u"])
        if memory is not None and t < 4:
            memory.sample()
    seconds = time.perf_counter() - t0
    alg.close()
    return {"frames": nframes, "seconds": seconds, "fps": nframes / seconds}, us


# ----------------------------------------------------------------------------- the two cases
def case_2d(cp, args, report):
    import bench_cases as cases
    import blockreg as api

    params = dict(cases.DEFAULT_PARAMS)
    c = cases.make_case("2d", args.distinct_2d, seed=0, params=params)
    frames = [np.asarray(f) for f in c["movie"]]
    fixed_d = cp.asarray(c["fixed"])
    mem = DeviceMemory(cp)
    out = {"shape": list(c["shape"]), "gridsize": list(c["gridsize"]),
           "maxshift": list(c["maxshift"]), "frames_distinct": len(frames)}
    out["stages_s"] = stage_times(cp, api, fixed_d, c["nodes"], c["maxshift"], c["pp"],
                                  frames[: min(len(frames), 12)])
    out["stages_fps"] = {s: 1 / v for s, v in out["stages_s"].items() if v > 0}
    report(out)
    gpu, us = end_to_end(api, fixed_d, c["nodes"], c["maxshift"], c["pp"], frames,
                         args.frames_2d, memory=mem)
    mem.sample()
    u_dense = np.stack([cases.dense(u, c["nodes"], c["shape"]) for u in us[: len(frames)]])
    gpu["rmse_px"] = cases.displacement_rmse(u_dense, c["u_true"][: len(u_dense)],
                                                  c["maxshift"])
    out["gpu"] = gpu | mem.report()
    report(out)
    if not args.skip_cpu:
        cpu, us = end_to_end(api, c["fixed"], c["nodes"], c["maxshift"], c["pp"], frames,
                             min(args.cpu_frames_2d, len(frames)))
        u_dense = np.stack([cases.dense(u, c["nodes"], c["shape"]) for u in us])
        cpu["rmse_px"] = cases.displacement_rmse(u_dense, c["u_true"][: len(us)],
                                                      c["maxshift"])
        out["cpu"] = cpu | {"threads": os.cpu_count()}
        report(out)
    if not args.skip_suite2p:
        out["suite2p_gpu"] = suite2p_gpu(c, args.frames_suite2p)
    out["ratios"] = _ratios(out)
    return out


def _texture_volume(cp, shape, seed=0):
    import cupyx.scipy.ndimage as cndi

    rng = cp.random.default_rng(seed)
    vol = rng.standard_normal(shape, dtype=cp.float32)
    vol = cndi.gaussian_filter(vol, (1.0, 3.0, 3.0))
    vol -= vol.min()
    vol *= 1000.0 / vol.max()
    return vol + 100.0


def case_3d(cp, args, report):
    import cupyx.scipy.ndimage as cndi

    import blockreg as api

    shape = tuple(args.shape_3d)
    grid, maxshift = (tuple(PRODUCTION[k]) for k in ("gridsize", "maxshift"))
    if shape != PRODUCTION["shape"]:     # a smaller trial: a grid and search that fit it
        grid = tuple(max(2, min(g, n // 8)) for g, n in zip(grid, shape))
        maxshift = tuple(max(1, min(m, n // 6)) for m, n in zip(maxshift, shape))
    fixed_raw = _texture_volume(cp, shape)
    rng = np.random.default_rng(1)
    # inside the search range with room for the local fit: up to half of maxshift per axis
    shifts = [rng.uniform(-0.5, 0.5, 3) * np.array(maxshift) for _ in range(args.distinct_3d)]
    frames = []
    for d in shifts:
        # moving(x) = fixed(x - d): blockreg's convention (DESIGN.md §4)
        mov = cndi.shift(fixed_raw, tuple(d), order=1, mode="nearest")
        mov += cp.random.default_rng(2).standard_normal(shape, dtype=cp.float32) * 5.0
        frames.append(cp.asnumpy(mov))
    pp = api.PreprocessSNF(bias=100.0, sigma_lp=0.0, sigma_hp=(3.0, 25.0, 25.0))
    fixed_d = pp(fixed_raw)
    nodes = tuple(np.linspace(0.0, n - 1.0, g) for n, g in zip(shape, grid))
    out = {"shape": list(shape), "gridsize": list(grid), "maxshift": list(maxshift),
           "volume_gib": float(np.prod(shape)) * 4 / 2**30}
    mem = DeviceMemory(cp)
    if not args.skip_gpu:
        out["stages_s"] = stage_times(cp, api, fixed_d, nodes, maxshift, pp, frames[:3])
        out["stages_fps"] = {s: 1 / v for s, v in out["stages_s"].items() if v > 0}
        report(out)
        gpu, us = end_to_end(api, fixed_d, nodes, maxshift, pp, frames, args.volumes, memory=mem)
        mem.sample()
        out["gpu"] = gpu | _translation_error(us, shifts, grid) | mem.report()
        report(out)
    if not args.skip_cpu and args.cpu_volumes > 0:
        cpu, us = end_to_end(api, cp.asnumpy(fixed_d), nodes, maxshift, pp, frames[:1],
                             args.cpu_volumes)
        out["cpu"] = cpu | _translation_error(us, shifts[:1], grid) | {"threads": os.cpu_count()}
        report(out)
    if not args.skip_suite2p:
        out["suite2p_gpu"] = suite2p_gpu_planes(frames[0], cp.asnumpy(fixed_raw))
    out["ratios"] = _ratios(out)
    return out


def _translation_error(us, shifts, grid):
    """RMSE over interior nodes (edge apertures hang over the border) and the largest error."""
    core = tuple(slice(1, -1) if g > 2 else slice(None) for g in grid)
    truth = [shifts[t % len(shifts)] for t in range(len(us))]
    inner = [np.sqrt(np.mean(np.sum((u[core] - d) ** 2, axis=-1))) for u, d in zip(us, truth)]
    worst = [np.abs(u - d).max() for u, d in zip(us, truth)]
    return {"node_rmse_px": float(np.mean(inner)), "node_max_err_px": float(np.max(worst))}


# ----------------------------------------------------------------------------- suite2p on CUDA
def _suite2p_on_cuda():
    """(suite2p_peer, torch, settings), or a ``{"skipped": why}`` dict when suite2p can't run."""
    try:
        import suite2p_peer
        import torch
        settings = suite2p_peer.default_registration_settings((64, 64))
    except ImportError as exc:
        return {"skipped": f"suite2p not installed ({exc})"}
    if not torch.cuda.is_available():
        return {"skipped": "torch sees no CUDA device"}
    return suite2p_peer, torch, settings


def suite2p_gpu(c, nframes):
    peer = _suite2p_on_cuda()
    if isinstance(peer, dict):
        return peer
    suite2p_peer, torch, settings = peer
    halve = float(np.max(c["movie"])) > np.iinfo(np.int16).max
    movie = suite2p_peer.to_int16(c["movie"], halve)
    reps = max(1, nframes // len(movie))
    movie = np.concatenate([movie] * reps)
    ref = suite2p_peer.to_int16(c["fixed_clean"], halve)
    suite2p_peer.register_movie(movie[:8], ref, settings, device="cuda")       # warm-up
    dt, _, u = suite2p_peer.register_movie(movie, ref, settings, device="cuda")
    import bench_cases as cases

    n = len(c["movie"])
    return {"frames": len(movie), "seconds": dt, "fps": len(movie) / dt,
            "rmse_px": cases.displacement_rmse(u[:n], c["u_true"], c["maxshift"]),
            "torch": torch.__version__}


def suite2p_gpu_planes(volume, ref):
    """suite2p on the volume's planes as a movie of 2-D frames (it registers planes, not volumes)."""
    peer = _suite2p_on_cuda()
    if isinstance(peer, dict):
        return peer
    suite2p_peer, torch, settings = peer
    planes = suite2p_peer.to_int16(volume, None)
    refs = suite2p_peer.to_int16(ref, None)
    suite2p_peer.register_movie(planes[:2], refs[0], settings, device="cuda")
    total = 0.0
    for z in range(len(planes)):
        dt, _, _ = suite2p_peer.register_movie(planes[z:z + 1], refs[z], settings, device="cuda")
        total += dt
    return {"planes": len(planes), "seconds_per_volume": total, "volumes_per_s": 1 / total,
            "note": "plane by plane against each plane's reference; no z motion"}


def _ratios(out):
    r = {}
    gpu = out.get("gpu", {}).get("fps")
    for peer, key in (("cpu", "fps"), ("suite2p_gpu", "fps"), ("suite2p_gpu", "volumes_per_s")):
        v = out.get(peer, {}).get(key)
        if gpu and v:
            r[f"gpu_over_{peer}"] = gpu / v
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="2d,3d")
    p.add_argument("--frames-2d", type=int, default=2000)
    p.add_argument("--distinct-2d", type=int, default=24, help="generated 2-D frames (cycled)")
    p.add_argument("--cpu-frames-2d", type=int, default=24)
    p.add_argument("--frames-suite2p", type=int, default=960)
    p.add_argument("--volumes", type=int, default=6)
    p.add_argument("--distinct-3d", type=int, default=3)
    p.add_argument("--cpu-volumes", type=int, default=1)
    p.add_argument("--shape-3d", type=lambda v: tuple(int(x) for x in v.split("x")),
                   default=PRODUCTION["shape"], help="e.g. 60x1080x1120 (the default)")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-gpu", action="store_true",
                   help="3-D: only the CPU figure (gpu_check.sh runs it under its own time limit)")
    p.add_argument("--skip-suite2p", action="store_true")
    default_out = Path(os.environ["OUT"]) / "bench_gpu.json" if os.environ.get("OUT") else \
        HERE / "out" / "bench_gpu.json"
    p.add_argument("--out", type=Path, default=default_out)
    args = p.parse_args(argv)

    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    results = {"device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
               "device_memory_gib": props["totalGlobalMem"] / 2**30, "cupy": cp.__version__,
               "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "cases": {}}
    try:
        import subprocess
        results["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                                           capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(name):
        def report(partial):
            results["cases"][name] = partial
            args.out.write_text(json.dumps(results, indent=2, default=float))
            print(f"[{name}] {json.dumps(partial, default=float)}", flush=True)
        return report

    for name in args.cases.split(","):
        run = {"2d": case_2d, "3d": case_3d}[name]
        try:
            save(name)(run(cp, args, save(name)))
        except Exception as exc:                  # keep the other case's figures
            results["cases"].setdefault(name, {})["error"] = f"{type(exc).__name__}: {exc}"
            save(name)(results["cases"][name])
        cp.get_default_memory_pool().free_all_blocks()
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
