"""Frames/s (wall and CPU time) and displacement RMSE of blockreg configurations on a bench case.

A lighter companion of ``bench_core.py`` (no suite2p, no stage times) for comparing settings, or
two versions of blockreg on the same movie: run it once per version with ``PYTHONPATH`` pointing
at that version's ``common/`` and alternate the runs on a shared machine::

    python benchmarks/bench_configs.py 3d 8 '[{}, {"passes": 1}, {"refine_maxshift": null}]'
    PYTHONPATH=/path/to/old/common python benchmarks/bench_configs.py 3d 8 '[{"passes": 2}]'

Arguments: case (``2d``/``3d`` of ``bench_cases.CASES``), number of frames, a JSON list of
``Apertures`` keyword arguments. Two threads (``--threads``), warped output as in ``bench_core``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cases as cases  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", choices=sorted(cases.CASES))
    p.add_argument("frames", type=int)
    p.add_argument("configs", type=json.loads)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ["BLOCKREG_FFT_WORKERS"] = str(args.threads)
    with threadpool_limits(args.threads):
        c = cases.make_case(args.case, args.frames, 0, cases.DEFAULT_PARAMS)
        for kw in args.configs:
            alg = c["api"].Apertures(c["fixed"], c["nodes"], c["maxshift"], c["lam"],
                                     preprocess=c["pp"], **kw)
            alg.prepare()
            alg.run_frame(c["movie"][0], 0, ("u", "warped"))         # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            us = [alg.run_frame(f, t, ("u", "warped"))["u"] for t, f in enumerate(c["movie"])]
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            dense = np.stack([cases.dense(u, c["nodes"], c["shape"]) for u in us])
            rmse = cases.displacement_rmse(dense, c["u_true"], c["maxshift"])
            print(json.dumps({"config": kw, "frames": len(us), "fps_wall": len(us) / wall,
                              "fps_cpu": len(us) / cpu, "rmse_px": rmse,
                              "blockreg": str(Path(c["api"].__file__).parent)}), flush=True)


if __name__ == "__main__":
    main()
