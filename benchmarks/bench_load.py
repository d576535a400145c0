"""Load test on loopback: 20 clients submitting and polling while a 50,000-frame job runs.

Starts the lab shape on this machine (PostgreSQL, a Redis of its own as compose runs it, the
dispatcher, the waitress coordinator and ``--workers`` Celery workers), submits one big job
(``--big-frames`` frames of a small movie), then runs ``--clients`` threads for ``--duration``
seconds, each repeating: submit a small job, poll it (``GET /api/v1/jobs/<id>``) until it
finishes or the time is up, list jobs (``GET /api/v1/jobs``).  Bounded in time: the big job need
not finish.

Reports the API latency per request kind (p50, p99, max), the requests and errors (any 5xx or
transport error), the small jobs finished and whether each succeeded, the big job's progress, and
the memory of PostgreSQL (database size), Redis (``used_memory``, ``used_memory_peak``) and the
coordinator (RSS). ``--json`` writes them.

Usage::

    python benchmarks/bench_load.py                                  # a fresh database in the
    python benchmarks/bench_load.py --duration 60 --clients 20 --workers 4   # local PostgreSQL
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def write_movies(folder: Path, big_frames: int) -> tuple[Path, Path]:
    """A big movie (uint16, 32x32, ``big_frames`` frames) and a small one (16 frames, 64x64)."""
    from blockreg.synthetic import make_movie

    small, _, _ = make_movie((64, 64), 16, max_translation=2, max_local=1, seed=1)
    np.save(folder / "small.npy", small)
    base, _, _ = make_movie((32, 32), 64, max_translation=1, max_local=0.5, seed=2)
    big = np.lib.format.open_memmap(folder / "big.npy", mode="w+", dtype=np.uint16,
                                    shape=(big_frames, 32, 32))
    for start in range(0, big_frames, 64):
        stop = min(big_frames, start + 64)
        big[start:stop] = np.clip(base[: stop - start], 0, 65535).astype(np.uint16)
    big.flush()
    return folder / "big.npy", folder / "small.npy"


def spec(path: Path, gridsize, maxshift, name: str) -> dict:
    return {"name": name, "input": {"path": str(path)}, "fixed_index": 0,
            "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 8.0},
            "params": {"gridsize": gridsize, "maxshift": maxshift, "lambda": 1e-3, "passes": 1},
            "monitor": ["u", "mismatch"]}


class Client(threading.Thread):
    """One user: submit a small job, poll it, list jobs; again until the deadline."""

    def __init__(self, url, small_spec, deadline, latencies, outcomes, errors):
        super().__init__(daemon=True)
        self.url, self.spec, self.deadline = url, small_spec, deadline
        self.latencies, self.outcomes, self.errors = latencies, outcomes, errors
        self.session = requests.Session()

    def call(self, kind, method, path, **kwargs):
        started = time.perf_counter()
        try:
            response = self.session.request(method, self.url + path, timeout=60, **kwargs)
        except requests.RequestException as exc:
            self.errors.append(f"{kind}: {type(exc).__name__}")
            return None
        self.latencies[kind].append(time.perf_counter() - started)
        if response.status_code >= 500:
            self.errors.append(f"{kind}: {response.status_code}")
        return response

    def run(self):
        while time.monotonic() < self.deadline:
            created = self.call("POST /jobs", "POST", "/api/v1/jobs", json=self.spec)
            if created is None or created.status_code != 201:
                continue
            job_id = created.json()["id"]
            state = "queued"
            while time.monotonic() < self.deadline:
                got = self.call("GET /jobs/<id>", "GET", f"/api/v1/jobs/{job_id}")
                if got is not None and got.status_code == 200:
                    state = got.json()["state"]
                    if state in ("succeeded", "failed", "cancelled"):
                        self.outcomes.append(state)
                        break
                self.call("GET /jobs", "GET", "/api/v1/jobs?limit=20")
                time.sleep(0.5)


def memory(database_url, redis_port, coordinator_pid) -> dict:
    import redis
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        db_bytes = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    info = redis.Redis(port=redis_port).info("memory")
    rss = None
    try:
        for line in Path(f"/proc/{coordinator_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"postgres_database_bytes": db_bytes, "redis_used_memory": info["used_memory"],
            "redis_used_memory_peak": info["used_memory_peak"], "coordinator_rss": rss}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--big-frames", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from blockreg_services.embedded import EmbeddedStack
    from helpers.services import fresh_postgres_database

    if shutil.which("redis-server") is None:
        print("needs redis-server", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    big_path, small_path = write_movies(work, args.big_frames)
    redis_port = _free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--appendonly", "yes",
         "--maxmemory-policy", "noeviction", "--dir", str(work), "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        with fresh_postgres_database() as database_url:
            with EmbeddedStack(work / "home", port=0, workers=args.workers, stop_timeout=10,
                               database_url=database_url,
                               broker_url=f"redis://127.0.0.1:{redis_port}/0",
                               env={"BLOCKREG_FFT_WORKERS": "1"}) as stack:
                url = stack.url
                started = time.perf_counter()
                big = requests.post(f"{url}/api/v1/jobs", timeout=120,
                                    json=spec(big_path, [3, 3], [3, 3], "big"))
                big.raise_for_status()
                big_id, big_submit_s = big.json()["id"], time.perf_counter() - started
                latencies, outcomes, errors = defaultdict(list), [], []
                deadline = time.monotonic() + args.duration
                clients = [Client(url, spec(small_path, [3, 3], [4, 4], f"small-{i}"), deadline,
                                  latencies, outcomes, errors) for i in range(args.clients)]
                for c in clients:
                    c.start()
                for c in clients:
                    c.join(args.duration + 120)
                big_status = requests.get(f"{url}/api/v1/jobs/{big_id}", timeout=60).json()
                mem = memory(database_url, redis_port, stack.child("coordinator").pid)
                requests.post(f"{url}/api/v1/jobs/{big_id}/cancel", timeout=60)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}, "
                   f"Python {platform.python_version()})",
        "command": "python benchmarks/bench_load.py " + " ".join(argv or sys.argv[1:]),
        "clients": args.clients, "duration_s": args.duration, "workers": args.workers,
        "big_frames": args.big_frames, "big_submit_s": round(big_submit_s, 2),
        "big_frames_done": big_status["frames_done"],
        "latency_ms": {kind: {"n": len(v), "p50": round(percentile(v, 50), 1),
                              "p99": round(percentile(v, 99), 1),
                              "max": round(max(v) * 1000, 1)}
                       for kind, v in sorted(latencies.items())},
        "small_jobs_finished": len(outcomes),
        "small_jobs_succeeded": outcomes.count("succeeded"),
        "errors": len(errors), "error_kinds": sorted(set(errors)),
        "memory": mem,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
