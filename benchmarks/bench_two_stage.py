"""Two-stage registration benchmark: accuracy against noise, and memory of the whole-series phase.

1. **Accuracy**: a smoothly moving synthetic sample (``tests/helpers/smooth_motion.py``: texture of
   ``blockreg.synthetic``, translation + two smooth local fields following slow sinusoids, Poisson
   shot noise) at several photon counts.  Per frame: ``Apertures`` (fixed lambda).  Two-stage:
   ``AperturesMismatch`` per frame, then ``reg.series.optimize_series`` at several ``lam_t``.
   Error: RMSE of the node displacements against the truth at the nodes.
2. **Memory of the whole-series phase**: ``AperturesMismatch`` outputs of T small frames are written
   to a Zarr store (first stage, not measured); a fresh process then runs
   ``optimize_series_windowed`` reading the store window by window, and reports its peak traced
   allocation (tracemalloc) and the process's peak RSS.  T = 1,000 and 10,000 by default.

Run from the repository root::

    python3 benchmarks/bench_two_stage.py                     # both parts (~10 min on 2 cores)
    python3 benchmarks/bench_two_stage.py --skip-memory --frames 24 --photons 3,200   # quick

Results are printed as Markdown and written as JSON to ``benchmarks/out/two_stage.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the smooth-motion generator of the tests
from helpers.smooth_motion import make_smooth_movie  # noqa: E402

from blockreg.algorithms.apertures import Apertures  # noqa: E402
from blockreg.algorithms.apertures_mismatch import AperturesMismatch  # noqa: E402
from blockreg.reg.deformation import nodes_for_shape  # noqa: E402
from blockreg.reg.preprocess import PreprocessSNF  # noqa: E402
from blockreg.reg.series import optimize_series, optimize_series_windowed  # noqa: E402
from blockreg.synthetic import grid_truth  # noqa: E402

ACCURACY = dict(shape=(96, 96), gridsize=(4, 4), maxshift=(6, 6), lam=1e-3, period=60.0, smoothness=20.0,
                max_translation=3.0, max_local=1.5)
MEMORY = dict(shape=(32, 32), gridsize=(3, 3), maxshift=(4, 4), lam=1e-3, lam_t=3e-3, window=128)


def _first_stage(movie, fixed_clean, nodes, maxshift, pp, wanted=("cs", "Qs", "mmis")):
    alg = AperturesMismatch(pp(fixed_clean), nodes, maxshift, pp)
    for t in range(len(movie)):
        yield t, alg.run_frame(movie[t], t, wanted)


def accuracy(photons_list, frames, lam_ts, seed):
    p = ACCURACY
    nodes = nodes_for_shape(p["shape"], p["gridsize"])
    pp = PreprocessSNF(bias=100, sigma_lp=1.0, sigma_hp=np.inf)
    rows = []
    for photons in photons_list:
        movie, fixed_clean, u_true = make_smooth_movie(
            p["shape"], frames, period=p["period"], max_translation=p["max_translation"],
            max_local=p["max_local"], photons=photons, seed=seed, smoothness=p["smoothness"])
        truth = grid_truth(u_true, nodes)
        rmse = lambda us: float(np.sqrt(np.mean((us - truth) ** 2)))  # noqa: E731
        t0 = time.perf_counter()
        per_frame = Apertures(pp(fixed_clean), nodes, p["maxshift"], p["lam"], pp)
        us1 = np.stack([per_frame.run_frame(movie[t], t, ["u"])["u"] for t in range(frames)])
        t1 = time.perf_counter()
        fits = dict(_first_stage(movie, fixed_clean, nodes, p["maxshift"], pp))
        cs, Qs, mmis = (np.stack([fits[t][k] for t in range(frames)]) for k in ("cs", "Qs", "mmis"))
        t2 = time.perf_counter()
        row = {"photons": photons, "frames": frames, "per_frame_rmse_px": rmse(us1),
               "per_frame_s": t1 - t0, "first_stage_s": t2 - t1, "two_stage": []}
        for lam_t in lam_ts:
            t3 = time.perf_counter()
            us2, _ = optimize_series(cs, Qs, mmis, nodes, p["lam"], lam_t)
            row["two_stage"].append({"lam_t": lam_t, "rmse_px": rmse(us2), "series_s": time.perf_counter() - t3})
        rows.append(row)
        print(f"photons {photons}: per-frame {row['per_frame_rmse_px']:.3f} px; two-stage "
              + ", ".join(f"lam_t={r['lam_t']:g}: {r['rmse_px']:.3f}" for r in row["two_stage"]), flush=True)
    return rows


def write_store(path, nframes, seed):
    """First stage of the memory case: AperturesMismatch of ``nframes`` frames into a Zarr store."""
    import zarr

    p = MEMORY
    nodes = nodes_for_shape(p["shape"], p["gridsize"])
    movie, fixed_clean, _ = make_smooth_movie(p["shape"], nframes, period=200.0, max_translation=2.0,
                                              max_local=0.5, photons=20, seed=seed, smoothness=8.0)
    pp = PreprocessSNF(bias=100, sigma_lp=1.0, sigma_hp=np.inf)
    alg = AperturesMismatch(pp(fixed_clean), nodes, p["maxshift"], pp)
    root = zarr.open_group(str(path), mode="w")
    chunk = 100
    arrays = {name: root.create_array(name, shape=(nframes,) + d.shape, chunks=(chunk,) + d.shape, dtype=d.dtype)
              for name, d in alg.declare().items() if name != "Es"}
    for start in range(0, nframes, chunk):
        stop = min(start + chunk, nframes)
        outs = [alg.run_frame(movie[t], t, tuple(arrays)) for t in range(start, stop)]
        for name, arr in arrays.items():
            arr[start:stop] = np.stack([o[name] for o in outs])


def _status_kib(field):
    # VmHWM/VmRSS belong to this process image; getrusage's ru_maxrss survives fork + exec and
    # would report the parent's peak (the process that made the 10,000-frame movie)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def series_phase(path):
    """Run in a fresh process: the windowed whole-series phase on a store, with its peak memory."""
    import zarr

    p = MEMORY
    root = zarr.open_group(str(path), mode="r")
    nodes = nodes_for_shape(p["shape"], p["gridsize"])
    rss0 = _status_kib("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    us = optimize_series_windowed(root["cs"], root["Qs"], root["mmis"], nodes, p["lam"], p["lam_t"],
                                  window=p["window"])
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = _status_kib("VmHWM")
    mmis = root["mmis"]
    return {"frames": int(us.shape[0]), "seconds": elapsed, "traced_peak_bytes": peak,
            "rss_growth_bytes": (rss1 - rss0) * 1024, "rss_peak_bytes": rss1 * 1024,
            "mmis_store_bytes_float32": int(np.prod(mmis.shape)) * 4,
            "mmis_all_in_memory_float64_bytes": int(np.prod(mmis.shape)) * 8}


def memory(frame_counts, seed):
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for T in frame_counts:
            store = Path(tmp) / f"mm-{T}.zarr"
            t0 = time.perf_counter()
            write_store(store, T, seed)
            first = time.perf_counter() - t0
            result = subprocess.run([sys.executable, __file__, "--series-phase", str(store)],
                                    capture_output=True, text=True, check=True)
            r = json.loads(result.stdout.strip().splitlines()[-1])
            r["first_stage_s"] = first
            out.append(r)
            print(f"T={T}: traced peak {r['traced_peak_bytes'] / 2**20:.1f} MiB, peak RSS "
                  f"{r['rss_peak_bytes'] / 2**20:.0f} MiB, {r['seconds']:.0f} s (all mmis in float64 "
                  f"would be {r['mmis_all_in_memory_float64_bytes'] / 2**20:.1f} MiB)", flush=True)
    return out


def markdown(results):
    lines = [f"Date {results['date']}; `{results['command']}`; {results['machine']}", ""]
    if results.get("accuracy"):
        p = ACCURACY
        lam_ts = [r["lam_t"] for r in results["accuracy"][0]["two_stage"]]
        lines += [f"Accuracy: {p['shape'][0]}x{p['shape'][1]}, grid {p['gridsize']}, maxshift {p['maxshift']}, "
                  f"lambda {p['lam']}, {results['accuracy'][0]['frames']} frames, period {p['period']:g} "
                  "frames; node-displacement RMSE (px) against the truth", "",
                  "| photons (peak) | per-frame | " + " | ".join(f"two-stage λt={v:g}" for v in lam_ts) + " |",
                  "|---|---|" + "---|" * len(lam_ts)]
        for r in results["accuracy"]:
            lines.append(f"| {r['photons']:g} | {r['per_frame_rmse_px']:.3f} | "
                         + " | ".join(f"{s['rmse_px']:.3f}" for s in r["two_stage"]) + " |")
    if results.get("memory"):
        lines += ["", "Whole-series phase (windowed, window 128, one process), frames "
                  f"{MEMORY['shape']}, grid {MEMORY['gridsize']}, maxshift {MEMORY['maxshift']}", "",
                  "| T | traced peak MiB (tracemalloc) | process peak RSS MiB | seconds | all mmis in memory (float64) MiB |",
                  "|---|---|---|---|---|"]
        for r in results["memory"]:
            lines.append(f"| {r['frames']} | {r['traced_peak_bytes'] / 2**20:.1f} | "
                         f"{r['rss_peak_bytes'] / 2**20:.0f} | {r['seconds']:.0f} | "
                         f"{r['mmis_all_in_memory_float64_bytes'] / 2**20:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photons", default="1,3,10,30,200")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--lam-t", default="3e-4,1e-3,3e-3,1e-2")
    parser.add_argument("--memory-frames", default="1000,10000")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--series-phase", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.series_phase:
        print(json.dumps(series_phase(args.series_phase)))
        return
    results = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(["python3", *sys.argv]),
               "machine": f"{os.cpu_count()} CPUs, {subprocess.run(['uname', '-m'], capture_output=True, text=True).stdout.strip()}"}
    if not args.skip_accuracy:
        results["accuracy"] = accuracy([float(v) for v in args.photons.split(",")], args.frames,
                                       [float(v) for v in args.lam_t.split(",")], args.seed)
    if not args.skip_memory:
        results["memory"] = memory([int(v) for v in args.memory_frames.split(",")], args.seed)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "two_stage.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
