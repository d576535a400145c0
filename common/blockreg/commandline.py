"""``blockreg register``: register a movie in this process from the command line.

The options are turned into a :class:`~blockreg.jobspec.JobSpec` and run through
:func:`blockreg.jobs.run_inprocess`, the same path the service uses, so a CLI run and a service job
with the same parameters compute the same thing.  The ``blockreg`` entry point
(``blockreg_services.cli``) mounts :func:`add_register_parser` and calls :func:`run_register`.

Every usage problem (a malformed number, a wrong count, a missing input, an existing output) is
reported as one line ``blockreg register: error: --option: problem`` on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

__all__ = ["add_register_parser", "run_register"]

# spec field (first dotted parts) -> the option that sets it, for error messages
_OPTION_OF_FIELD = {
    "input.path": "INPUT",
    "input.dataset": "--dataset",
    "input.channel": "--channel",
    "input.frames": "--frames",
    "fixed_index": "--fixed-index",
    "preprocess.bias": "--bias",
    "preprocess.sigma_lp": "--sigma-lp",
    "preprocess.sigma_hp": "--sigma-hp",
    "params.gridsize": "--gridsize",
    "params.maxshift": "--maxshift",
    "params.lambda": "--lambda",
    "params.lam": "--lambda",
    "params.overlap": "--overlap",
    "params.passes": "--passes",
    "params": "--gridsize/--maxshift",
    "monitor": "--monitor",
    "output.path": "--out",
}


class _UsageError(ValueError):
    def __init__(self, option, problem):
        super().__init__(f"{option}: {problem}")


def add_register_parser(subparsers):
    """Add the ``register`` options.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction or argparse.ArgumentParser
        The ``add_subparsers()`` object (a ``register`` subcommand is created), or an already
        created ``register`` parser to fill in.

    Returns
    -------
    argparse.ArgumentParser
        The ``register`` parser.
    """
    if hasattr(subparsers, "add_parser"):
        parser = subparsers.add_parser("register", help="register a movie in this process")
    else:
        parser = subparsers
    parser.description = (
        "Register every frame of INPUT to a fixed frame with aperture-based deformable registration "
        "and write the monitored variables to a Zarr store.")
    # numbers are parsed by run_register, so a bad value gets a one-line message naming the option
    parser.add_argument("input", metavar="INPUT", help="movie: .npy, .tif/.tiff, .zarr or .h5")
    parser.add_argument("--out", required=True, metavar="OUT.zarr", help="results store (must not exist)")
    parser.add_argument("--gridsize", required=True, metavar="G,G[,G]", help="apertures per axis, e.g. 8,8")
    parser.add_argument("--maxshift", required=True, metavar="M,M[,M]", help="largest shift per axis (pixels)")
    parser.add_argument("--lambda", dest="lam", required=True, metavar="L | MIN,MAX",
                        help="affine penalty weight, or a range for automatic choice (e.g. 1e-6,10)")
    parser.add_argument("--fixed-index", metavar="T", help="frame used as the fixed image (default: middle)")
    parser.add_argument("--monitor", default="u,mismatch", metavar="NAMES",
                        help="variables to store, comma-separated (default u,mismatch)")
    parser.add_argument("--bias", metavar="B", help="camera offset subtracted before the sqrt transform")
    parser.add_argument("--sigma-hp", metavar="S[,S..]", help="high-pass sigma in pixels (default off)")
    parser.add_argument("--sigma-lp", metavar="S[,S..]", help="low-pass sigma in pixels (default off)")
    parser.add_argument("--overlap", metavar="P[,P..]", help="aperture overlap in pixels (default 0)")
    parser.add_argument("--passes", default="1", metavar="{1,2}", help="2 = register again after warping")
    parser.add_argument("--workers", default="1", metavar="N", help="worker processes (default 1)")
    parser.add_argument("--frames", metavar="START:STOP[:STEP]", help="frames to register (default all)")
    parser.add_argument("--dataset", metavar="NAME", help="array inside a Zarr group or HDF5 file")
    parser.add_argument("--channel", metavar="C", help="channel of a multi-channel input")
    return parser


def _number(option, text, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise _UsageError(option, f"expected {'an integer' if kind is int else 'a number'}, "
                                  f"got {text!r}") from None
    if kind is float and math.isnan(value):
        raise _UsageError(option, "must not be NaN")
    return value


def _numbers(option, text, kind=float, count=None):
    parts = [p.strip() for p in str(text).split(",")]
    if any(p == "" for p in parts):
        raise _UsageError(option, f"expected comma-separated numbers, got {text!r}")
    values = [_number(option, p, kind) for p in parts]
    if count is not None and len(values) not in count:
        want = " or ".join(str(c) for c in count)
        raise _UsageError(option, f"expected {want} values, got {len(values)} ({text!r})")
    return values


def _frames(text):
    parts = str(text).split(":")
    if len(parts) not in (2, 3):
        raise _UsageError("--frames", f"expected START:STOP or START:STOP:STEP, got {text!r}")
    values = [_number("--frames", p, int) if p.strip() else None for p in parts]
    if values[1] is None:
        raise _UsageError("--frames", f"STOP is required, got {text!r}")
    start = 0 if values[0] is None else values[0]
    return [start, values[1]] + ([values[2]] if len(values) == 3 and values[2] is not None else [])


def _one_value_or_list(values):
    return values[0] if len(values) == 1 else values


def _spec_from_args(args) -> dict:
    input_path = Path(args.input)
    if not input_path.exists():
        raise _UsageError("INPUT", f"{args.input} does not exist")
    if Path(args.out).exists():
        raise _UsageError("--out", f"{args.out} already exists; choose a new path")
    gridsize = _numbers("--gridsize", args.gridsize, int, count=(2, 3))
    maxshift = _numbers("--maxshift", args.maxshift, int, count=(len(gridsize),))
    lam = _numbers("--lambda", args.lam, float, count=(1, 2))
    if any(v < 0 for v in lam):
        raise _UsageError("--lambda", f"must not be negative, got {args.lam!r}")
    if len(lam) == 2 and not 0 < lam[0] < lam[1]:
        raise _UsageError("--lambda", f"a range MIN,MAX needs 0 < MIN < MAX, got {args.lam!r}")
    monitor = [m.strip() for m in str(args.monitor).split(",")]
    if any(not m for m in monitor):
        raise _UsageError("--monitor", f"expected comma-separated names, got {args.monitor!r}")
    spec = {
        "input": {"path": str(input_path)},
        "params": {"gridsize": gridsize, "maxshift": maxshift,
                   "lambda": lam[0] if len(lam) == 1 else lam,
                   "passes": _number("--passes", args.passes, int)},
        "monitor": monitor,
        "output": {"path": str(args.out)},
    }
    if args.overlap is not None:
        spec["params"]["overlap"] = _one_value_or_list(_numbers("--overlap", args.overlap, int))
    if args.dataset is not None:
        spec["input"]["dataset"] = args.dataset
    if args.channel is not None:
        spec["input"]["channel"] = _number("--channel", args.channel, int)
    if args.frames is not None:
        spec["input"]["frames"] = _frames(args.frames)
    if args.fixed_index is not None:
        spec["fixed_index"] = _number("--fixed-index", args.fixed_index, int)
    preprocess = {}
    if args.bias is not None:
        preprocess["bias"] = _number("--bias", args.bias)
    if args.sigma_hp is not None:
        preprocess["sigma_hp"] = _one_value_or_list(_numbers("--sigma-hp", args.sigma_hp))
    if args.sigma_lp is not None:
        preprocess["sigma_lp"] = _one_value_or_list(_numbers("--sigma-lp", args.sigma_lp))
    if preprocess:
        spec["preprocess"] = preprocess
    return spec


def _option_for(field: str) -> str:
    parts = field.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in _OPTION_OF_FIELD:
            return _OPTION_OF_FIELD[key]
    return field


def _fail(message) -> int:
    print(f"blockreg register: error: {message}", file=sys.stderr)
    return 2


def run_register(args) -> int:
    """Run ``blockreg register`` with parsed ``args``; returns the exit code (0 ok, 2 usage error).

    Parameters
    ----------
    args : argparse.Namespace
        From a parser built by :func:`add_register_parser` (values are still strings).
    """
    from .jobs import run_inprocess
    from .jobspec import SpecError, validate_spec

    try:
        spec = _spec_from_args(args)
        workers = _number("--workers", args.workers, int)
        if workers < 1:
            raise _UsageError("--workers", f"must be at least 1, got {workers}")
        spec = validate_spec(spec, check_input=True)
    except _UsageError as exc:
        return _fail(exc)
    except SpecError as exc:
        # one line per problem, named by the option the user typed
        for err in exc.errors:
            _fail(f"{_option_for(err['field'])}: {err['problem']}")
        return 2
    try:
        results = run_inprocess(spec, out=args.out, workers=workers)
    except ValueError as exc:
        # e.g. a frame that is all NaN, or a fixed image without finite pixels
        return _fail(exc)
    nframes = len(next(iter(results.values())))
    summary = ", ".join(f"{name} {tuple(v.shape)}" for name, v in results.items())
    print(f"registered {nframes} frames -> {args.out} ({summary})")
    return 0


def main(argv=None) -> int:  # pragma: no cover - convenience for `python -m blockreg.commandline`
    parser = argparse.ArgumentParser(prog="blockreg register")
    add_register_parser(parser)
    return run_register(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
