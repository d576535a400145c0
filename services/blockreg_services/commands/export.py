"""``blockreg export STORE_OR_JOB OUT [--what movie|deformation] [--dtype TYPE]``.

Writes the registered movie to (Big)TIFF or Imagine (``.imagine`` + ``.cam``), chosen by OUT's
suffix, or the deformations to the documented NPZ layout (docs/formats.md), through
:func:`blockreg.io.export.export_results`.  A job id is resolved to its results store through the
server; the export itself reads the store directly (it must be reachable from here).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["add_parsers", "cmd_export"]


def cmd_export(args) -> int:
    from blockreg.io.export import export_results

    from ..cli import EXIT_OK, CliError, _call, _client
    from .report import store_or_job

    target = store_or_job(args.target)
    if isinstance(target, int):
        store = Path(_call(_client(args).status, target)["output_path"])
    else:
        store = target
    if not store.exists():
        raise CliError(f"STORE_OR_JOB: {store} does not exist")
    try:
        written = export_results(store, Path(args.out).expanduser(), what=args.what,
                                 fmt=args.format, dtype=args.dtype)
    except ValueError as exc:  # ParameterError names the field (what, fmt, dtype, out)
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"OUT: cannot write {args.out}: {exc.strerror or exc}") from None
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def add_parsers(sub) -> None:
    from ..cli import server_options

    p = sub.add_parser("export", help="export a registered movie (TIFF, Imagine) or the "
                                      "deformations (NPZ)")
    p.add_argument("target", metavar="STORE_OR_JOB", help="results store path or job id")
    p.add_argument("out", metavar="OUT",
                   help="output file: .tif/.tiff (BigTIFF when large), .btf, .imagine, .npz")
    p.add_argument("--what", choices=("movie", "deformation"), default="movie",
                   help="the registered movie (default) or the deformations")
    p.add_argument("--format", choices=("tiff", "bigtiff", "imagine", "npz"),
                   help="override the format OUT's suffix implies")
    p.add_argument("--dtype", help="pixel type of a movie (default the store's; an integer type "
                                   "rounds and clips)")
    server_options(p)
    p.set_defaults(func=cmd_export)
