"""``blockreg warp``: apply the deformations of a finished job to a movie.

On the server (default): ``blockreg warp --job 12 --channel 1`` submits a warp job (``kind:
"warp"``) and waits for it.  In this process: ``blockreg warp --source job-12.zarr --out w.zarr
--local``.  The movie defaults to the one the source job registered; ``--input``, ``--dataset``
and ``--channel`` choose another file or channel with the same frame geometry.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["add_parsers", "cmd_warp", "warp_spec"]


def warp_spec(args) -> dict:
    """The warp job spec of the parsed options (paths made absolute)."""
    from ..cli import CliError

    if (args.job is None) == (args.source is None):
        raise CliError("give exactly one of --job ID and --source STORE")
    source = ({"job": args.job} if args.job is not None
              else {"path": str(Path(args.source).expanduser().resolve())})
    spec = {"kind": "warp", "source": source, "tinterpolate": args.tinterpolate,
            "dtype": args.dtype}
    movie = {}
    if args.input is not None:
        movie["path"] = str(Path(args.input).expanduser().resolve())
    if args.dataset is not None:
        movie["dataset"] = args.dataset
    if args.channel is not None:
        movie["channel"] = args.channel
    if movie:
        spec["input"] = movie
    if args.medfilt is not None:
        spec["medfilt"] = args.medfilt
    if args.out is not None:
        spec["output"] = {"path": str(Path(args.out).expanduser().resolve())}
    return spec


def cmd_warp(args) -> int:
    from blockreg.jobspec import SpecError

    from ..cli import EXIT_OK, CliError, _client
    from .jobs import submit_and_wait

    spec = warp_spec(args)
    if args.local:
        from blockreg.jobs import run_inprocess

        if args.out is None or args.source is None:
            raise CliError("--local needs --source STORE and --out OUT.zarr")
        try:
            result = run_inprocess(spec)
        except SpecError as exc:
            raise CliError(*(f"{e['field']}: {e['problem']}" for e in exc.errors)) from None
        print(f"warped {len(result['registered'])} frames into {args.out}")
        return EXIT_OK
    return submit_and_wait(_client(args), spec, args.wait)


def _odd(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"must be an odd positive integer, got {value}")
    return value


def add_parsers(subparsers) -> None:
    """Add ``blockreg warp``."""
    from ..cli import server_options

    p = subparsers.add_parser("warp", help="apply a finished job's deformations to a movie")
    p.add_argument("--job", type=int, help="id of the finished job whose u to apply (server)")
    p.add_argument("--source", metavar="STORE", help="results store holding u (instead of --job)")
    p.add_argument("--input", metavar="MOVIE", help="movie to warp (default: the registered one)")
    p.add_argument("--dataset", help="array inside a Zarr group or HDF5 file")
    p.add_argument("--channel", type=int, help="channel to warp (default: the registered one)")
    p.add_argument("--medfilt", type=_odd, metavar="K", help="running median of u over K frames")
    p.add_argument("--tinterpolate", action="store_true",
                   help="also warp the frames between registered ones (u interpolated in time)")
    p.add_argument("--dtype", choices=("float32", "input"), default="float32",
                   help="float32, or the movie's integer type, rounded and clipped")
    p.add_argument("--out", metavar="OUT.zarr", help="store to write (default: server's results)")
    p.add_argument("--local", action="store_true", help="warp in this process, not on a server")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="print the job id and return without waiting")
    server_options(p)  # --server, --home (and --token where the server has users)
    p.set_defaults(func=cmd_warp)
