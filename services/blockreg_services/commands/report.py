"""``blockreg report JOB_OR_STORE [--out report.html]``: a job's quality report.

With a job id the report comes from the server (``GET /api/v1/jobs/<id>/report``); with the path
of a results store it is read from the store, or computed there when the store has none yet (no
server needed).  The key figures and any maxshift warning go to stdout; ``--out`` writes the
self-contained HTML page (``.html``) or the JSON (``.json``).
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["add_parsers", "cmd_report", "store_or_job"]


def store_or_job(text: str):
    """A job id (a positive integer that is not an existing path) or a store path."""
    if text.isdigit() and not Path(text).exists():
        return int(text)
    return Path(text).expanduser()


def _local_report(store: Path, recompute: bool) -> tuple[dict, str]:
    from blockreg.qc import load_report, load_report_html, write_report

    from ..cli import CliError

    try:
        report = None if recompute else load_report(store)
        if report is not None:
            html = load_report_html(store)
            if html is not None:
                return report, html
        return write_report(store)
    except ImportError as exc:  # matplotlib missing: the error names the extra
        raise CliError(str(exc)) from None
    except ValueError as exc:  # not a results store, unreadable
        raise CliError(f"STORE: {exc}") from None
    except OSError as exc:
        raise CliError(f"STORE: cannot write the report into {store}: {exc}") from None


def cmd_report(args) -> int:
    from blockreg.qc.text import bound_warning, key_figures

    from ..cli import EXIT_OK, CliError, _call, _client

    target = store_or_job(args.target)
    out = Path(args.out).expanduser() if args.out else None
    as_json = out is not None and out.suffix.lower() == ".json"
    if out is not None and out.suffix.lower() not in (".html", ".htm", ".json"):
        raise CliError(f"--out: {out.name} must end in .html or .json")
    if isinstance(target, int):
        client = _client(args)
        report = _call(client.report, target)
        html = None if as_json or out is None else _call(client.report, target, html=True)
        where = f"job {target}"
    else:
        if not target.exists():
            raise CliError(f"STORE: {target} does not exist (give a job id or a results store)")
        report, html = _local_report(target, args.recompute)
        where = str(target)
    print(f"quality report of {where}:")
    for line in key_figures(report):
        print(f"  {line}")
    warning = bound_warning(report)
    if warning:
        print(warning)
    if out is not None:
        try:
            out.write_text(json.dumps(report, indent=1) if as_json else html, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
        print(f"wrote {out}")
    return EXIT_OK


def add_parsers(sub) -> None:
    from ..cli import server_options

    p = sub.add_parser("report", help="show a job's quality report; --out writes the HTML page")
    p.add_argument("target", metavar="JOB_OR_STORE",
                   help="job id (asks the server) or results store path (works without one)")
    p.add_argument("--out", metavar="FILE", help="write the report: .html page or .json")
    p.add_argument("--recompute", action="store_true",
                   help="with a store path: compute the report again and save it in the store")
    server_options(p)
    p.set_defaults(func=cmd_report)
