"""Peak memory of registering one frame with blockreg, measured in a fresh interpreter so that
nothing else is counted (``bench_core.py --memory``, or ``python bench_memory.py CASE``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench_cases import make_algorithm, make_case, stage_runner


def memory_probe(name: str, threads: int, params: dict) -> dict:
    """Peak memory of one ``run_frame`` in a fresh interpreter (so nothing else is counted)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), BLOCKREG_FFT_WORKERS=str(threads))
    cmd = [sys.executable, str(Path(__file__)), name, json.dumps(params)]
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


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    with threadpool_limits(int(os.environ.get("OMP_NUM_THREADS", "1"))):
        print(json.dumps(_memory_probe_child(sys.argv[1], json.loads(sys.argv[2]))))
