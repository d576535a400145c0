"""Fingerprint the outputs of a few representative jobs, to show a refactor changed no bit.

Runs the demo spec (and variants: two passes, auto-lambda, warped raw frames, a 3-D volume)
in-process on generated movies and prints one SHA-256 per monitored array. Run it before and
after a change and diff the output:

    python benchmarks/output_fingerprint.py > before.json    # on the old commit
    python benchmarks/output_fingerprint.py > after.json     # on the new one
    diff before.json after.json                              # no output = bit-identical
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def _variants(movie_tif: Path, volume_npy: Path) -> dict:
    from blockreg_services.demo import demo_spec

    base = demo_spec(movie_tif, 6)
    base["monitor"] = ["u", "mismatch", "warped", "warped0", "lambda"]
    two_pass = copy.deepcopy(base)
    two_pass["params"]["passes"] = 2
    auto = copy.deepcopy(base)
    auto["params"]["lambda"] = [1e-5, 1.0]
    auto["monitor"] = ["u", "mismatch", "lambda", "lambdas", "datapenalty", "sigmoid_quality"]
    intensity = copy.deepcopy(base)
    intensity["params"].update(normalization="intensity", overlap=2, correct_bias=True)
    volume = {
        "input": {"path": str(volume_npy)},
        "fixed_index": 0,
        "preprocess": {"sigma_hp": 6.0},
        "params": {"gridsize": [2, 3, 3], "maxshift": [2, 4, 4], "lambda": 1e-3},
        "monitor": ["u", "mismatch", "warped0"],
    }
    # the defaults before issue 10 (one pass; two passes of the original's full recipe)
    one_pass = copy.deepcopy(base)
    one_pass["params"]["passes"] = 1
    two_pass_full = copy.deepcopy(base)
    two_pass_full["params"].update(passes=2, refine_maxshift=None)
    return {"demo": base, "two_pass": two_pass, "auto_lambda": auto, "intensity": intensity,
            "volume": volume, "one_pass": one_pass, "two_pass_full": two_pass_full}


def main() -> int:
    from blockreg.jobs import run_inprocess
    from blockreg.synthetic import make_movie
    from blockreg_services.demo import write_demo_movie

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        movie_tif, _ = write_demo_movie(tmp / "demo", 6)
        vol, _, _ = make_movie((12, 40, 40), 3, max_translation=2.0, max_local=1.0, seed=3)
        volume_npy = tmp / "volume.npy"
        np.save(volume_npy, vol)
        for name, spec in _variants(movie_tif, volume_npy).items():
            results = run_inprocess(spec, out=None)
            out[name] = {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]
                         for k, v in sorted(results.items())}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
