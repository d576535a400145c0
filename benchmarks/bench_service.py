"""Service overhead: a 200-frame job through the service vs the in-process runner, same workers.

Measures, on one machine:

1. the in-process runner (``blockreg.jobs.run_inprocess``, a pool of ``--workers`` processes) on
   the job, wall time including its pool start-up;
2. the same job submitted to a running stack (``--workers`` Celery workers, concurrency 1 each),
   wall time from ``POST /api/v1/jobs`` to the job's final state (the stack is started before the
   clock, as it would be on a server; each worker still prepares the job context on its first
   frame, like each pool process does);

   The two are run ``--repeat`` times, alternating, and compared by their medians: on a shared
   machine a single pair is mostly noise. The first service run is also reported on its own (its
   worker processes import the algorithm stack on their first task).
3. the time ``POST /api/v1/jobs`` takes to return for a 100,000-frame job (the job is cancelled
   right after).

The stack is the embedded default (SQLite + private Redis) unless ``--database-url`` and
``--broker-url`` name a PostgreSQL and a Redis. Target (issue 3): service within 25 % of the
in-process wall time; the big submit under 5 s.

Usage::

    python benchmarks/bench_service.py                       # embedded stack
    python benchmarks/bench_service.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench \\
        --broker-url redis://127.0.0.1:6379/14
"""
from __future__ import annotations

import os

# one BLAS/FFT thread per process on both sides, so "2 workers" means 2 cores each way
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def job_spec(movie: Path, args) -> dict:
    return {
        "input": {"path": str(movie)},
        "fixed_index": 0,
        "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 10.0},
        "params": {"gridsize": [args.grid, args.grid], "maxshift": [args.maxshift, args.maxshift],
                   "lambda": 1e-3},
        "monitor": ["u", "mismatch"],
    }


def make_inputs(folder: Path, args) -> tuple[Path, Path]:
    from blockreg.synthetic import make_movie

    folder.mkdir(parents=True, exist_ok=True)
    movie, _, _ = make_movie((args.size, args.size), args.frames, max_translation=3, max_local=1,
                             seed=0)
    small = folder / "movie.npy"
    np.save(small, movie)
    # the 100,000-frame input only needs to exist and be readable: a sparse memmap of zeros
    # plus one textured fixed frame keeps it cheap to write
    big = folder / "big.npy"
    frames = np.lib.format.open_memmap(big, mode="w+", dtype=movie.dtype,
                                       shape=(args.big_frames, 16, 16))
    frames[0] = movie[0, :16, :16]
    frames.flush()
    del frames
    return small, big


def time_inprocess(spec: dict, workers: int, out: Path) -> float:
    from blockreg.jobs import run_inprocess

    start = time.perf_counter()
    run_inprocess(spec, out=out, workers=workers)
    return time.perf_counter() - start


def time_service(client, spec: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    job_id = client.submit(spec)
    status = client.wait(job_id, poll=0.05)
    return time.perf_counter() - start, status


def time_big_submit(client, big: Path) -> float:
    spec = {"input": {"path": str(big)}, "fixed_index": 0,
            "params": {"gridsize": [2, 2], "maxshift": [2, 2], "lambda": 1e-3}, "monitor": ["u"]}
    start = time.perf_counter()
    job_id = client.submit(spec)
    elapsed = time.perf_counter() - start
    client.cancel(job_id)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--maxshift", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--big-frames", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each (median)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: the embedded SQLite)")
    parser.add_argument("--broker-url", help="Redis URL (default: the embedded private Redis)")
    args = parser.parse_args(argv)

    from blockreg import Client
    from blockreg_services.embedded import EmbeddedStack

    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        movie, big = make_inputs(work / "inputs", args)
        spec = job_spec(movie, args)
        inprocess, service = [], []
        with EmbeddedStack(work / "home", port=0, workers=args.workers,
                           database_url=args.database_url, broker_url=args.broker_url) as stack:
            client = Client(stack.url)
            for run in range(args.repeat):
                inprocess.append(time_inprocess(spec, args.workers, work / f"inprocess-{run}.zarr"))
                seconds, status = time_service(client, spec)
                if status["state"] != "succeeded":
                    raise SystemExit(f"the service job ended {status['state']}: {status.get('error')}")
                service.append(seconds)
            big_submit_s = time_big_submit(client, big)
            backend = "postgresql+redis" if args.database_url else "embedded sqlite+private redis"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    inprocess_s, service_s = float(np.median(inprocess)), float(np.median(service))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                   f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "stack": backend,
        "job": f"{args.frames} frames {args.size}x{args.size}, grid {args.grid}x{args.grid}, "
               f"maxshift {args.maxshift}, fixed lambda, monitor u+mismatch",
        "workers": args.workers,
        "repeat": args.repeat,
        "inprocess_s_runs": [round(t, 2) for t in inprocess],
        "service_s_runs": [round(t, 2) for t in service],
        "inprocess_s": round(inprocess_s, 2),
        "service_s": round(service_s, 2),
        "service_over_inprocess": round(service_s / inprocess_s, 3),
        "big_submit_frames": args.big_frames,
        "big_submit_s": round(big_submit_s, 2),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_service.json").write_text(json.dumps(report, indent=2))
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
