"""Reporting for ``bench_core.py``: what machine a result came from, and the Markdown tables."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from threadpoolctl import threadpool_info

HERE = Path(__file__).resolve().parent
STAGES = ("preprocess", "mismatch", "fit", "optimise", "warp")


def machine_info(threads: int) -> dict:
    """What a reader needs to reproduce or discount the figures."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "torch", "suite2p", "blockreg"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # a peer not installed is reported, not fatal
            versions[name] = None
    try:
        commit = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "threads": threads,
        "blas": [{k: d.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
                 for d in threadpool_info()],
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "blockreg_fft_workers": os.environ.get("BLOCKREG_FFT_WORKERS"),
        # the machine is shared: a load above the thread count means the timings are pessimistic
        "loadavg_1_5_15": list(os.getloadavg()),
        "versions": versions,
        "git": commit,
    }



def markdown(results: dict) -> str:
    info = results["machine"]
    lines = [f"Machine: {info['cpu_model']}, nproc {info['nproc']}, {info['threads']} thread(s) "
             f"for both; load average {info['loadavg_1_5_15'][0]:.1f} at start, "
             f"{results['loadavg_at_end'][0]:.1f} at end; {info['date']}; `{info['command']}`", ""]
    lines += ["| case | stage | blockreg ms/frame (wall, median) | (CPU, median) |", "|---|---|---|---|"]
    for name, r in results["cases"].items():
        wall, cpu = r["stages_s"]["wall"], r["stages_s"]["cpu"]
        for st in STAGES:
            lines.append(f"| {name} | {st} | {1e3 * wall[st]:.1f} | {1e3 * cpu[st]:.1f} |")
        lines.append(f"| {name} | sum of stages | {1e3 * sum(wall.values()):.1f} | "
                     f"{1e3 * sum(cpu.values()):.1f} |")
    lines += ["", "frames/s: best wall time of the repeats / CPU time; ratios blockreg ÷ suite2p", "",
              "| case | frames | blockreg fps | suite2p fps | fps ratio | blockreg fps (CPU) "
              "| suite2p fps (CPU) | fps ratio (CPU) | blockreg RMSE px | suite2p RMSE px | RMSE ratio |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f="{:.2f}": "n/a" if v is None else f.format(v)  # noqa: E731
    for name, r in results["cases"].items():
        s = r.get("suite2p")
        for key in sorted(k for k in r if k.startswith("blockreg")):
            b = r[key]
            label = f"{name}, {b.get('config', b.get('passes'))}"
            lines.append(" | ".join([
                f"| {label}", str(b["frames"]), fmt(b["fps"]), fmt(s and s["fps"]),
                fmt(s and b["fps"] / s["fps"]), fmt(b["fps_cpu"]), fmt(s and s["fps_cpu"]),
                fmt(s and b["fps_cpu"] / s["fps_cpu"]), fmt(b["rmse_px"], "{:.3f}"),
                fmt(s and s["rmse_px"], "{:.3f}"), fmt(s and b["rmse_px"] / s["rmse_px"]) + " |"]))
            if "rmse_inplane_px" in b:
                lines.append(f"| {label}, in-plane (y,x) only | | | | | | | | "
                             f"{b['rmse_inplane_px']:.3f} | "
                             f"{fmt(s and s.get('rmse_inplane_px'), '{:.3f}')} | |")
    for name, r in results["cases"].items():
        m = r.get("memory")
        if m:
            lines.append(f"\nPeak memory of one run_frame ({name}, tracemalloc): "
                         f"{m['run_frame_peak_bytes'] / 2**20:.1f} MiB = "
                         f"{m['run_frame_peak_per_frame']:.1f}x the float32 frame; prepare(): "
                         f"{m['prepare_peak_per_frame']:.1f}x; by stage: "
                         + ", ".join(f"{k} {v:.1f}x" for k, v in m["stage_peak_per_frame"].items()))
    return "\n".join(lines)
