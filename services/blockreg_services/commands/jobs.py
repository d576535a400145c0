"""``blockreg submit|status|cancel|list``: the jobs of a coordinator, through :class:`blockreg.Client`.

``submit --wait`` (and ``blockreg warp``, which submits a warp job) follows the job with a
progress bar and exits 0 when it succeeded, 1 when it failed or was cancelled.
"""
from __future__ import annotations

import json
import sys

__all__ = ["add_parsers", "submit_and_wait", "cmd_submit", "cmd_status", "cmd_cancel", "cmd_list"]


def submit_and_wait(client, spec: dict, wait: bool) -> int:
    """Submit ``spec`` and print the job id; with ``wait``, follow the job to its end and return
    the exit code of its final state."""
    from ..cli import EXIT_JOB_FAILED, EXIT_OK, _call, wait_with_progress

    job_id = _call(client.submit, spec)
    print(job_id)
    if not wait:
        return EXIT_OK
    status = wait_with_progress(client, job_id)
    error = f": {status['error']}" if status.get("error") else ""
    print(f"job {job_id} {status.get('state')}{error}", file=sys.stderr)
    return EXIT_OK if status.get("state") == "succeeded" else EXIT_JOB_FAILED


def cmd_submit(args) -> int:
    from ..cli import _client, read_spec

    return submit_and_wait(_client(args), read_spec(args.spec), args.wait)


def cmd_status(args) -> int:
    from ..cli import EXIT_OK, _call, _client

    status = _call(_client(args).status, args.job)
    print(json.dumps(status, indent=2, default=str))
    return EXIT_OK


def cmd_cancel(args) -> int:
    from ..cli import EXIT_OK, _call, _client

    _call(_client(args).cancel, args.job)
    print(f"job {args.job} cancelled")
    return EXIT_OK


def cmd_list(args) -> int:
    from ..cli import EXIT_OK, _call, _client

    jobs = _call(_client(args).jobs)
    print(f"{'id':>6}  {'state':<10}  {'frames':>13}  output")
    for job in jobs:
        frames = f"{job.get('frames_done', 0)}/{job.get('frames_total', 0)}"
        if job.get("phase") in ("optimize", "stitching"):  # series windows of a two-stage job
            frames = f"w{job.get('phase_done', 0)}/{job.get('phase_total', 0)}"
        print(f"{job.get('id', '?'):>6}  {job.get('state', '?'):<10}  {frames:>13}  "
              f"{job.get('output_path') or ''}")
    return EXIT_OK


def add_parsers(subparsers) -> None:
    """Add ``blockreg submit``, ``status``, ``cancel`` and ``list``."""
    from ..cli import positive_int, server_options

    submit = subparsers.add_parser("submit", help="submit a job spec (.json, .toml or .yaml)")
    submit.add_argument("spec", help="job spec file")
    server_options(submit)
    submit.add_argument("--wait", action="store_true",
                        help="wait for the job with a progress bar; exit 1 if it fails")
    submit.set_defaults(func=cmd_submit)

    for name, helptext, func in (("status", "show a job's state", cmd_status),
                                 ("cancel", "cancel a job", cmd_cancel)):
        p = subparsers.add_parser(name, help=helptext)
        p.add_argument("job", type=positive_int, help="job id")
        server_options(p)
        p.set_defaults(func=func)

    listing = subparsers.add_parser("list", help="list jobs")
    server_options(listing)
    listing.set_defaults(func=cmd_list)
