"""``blockreg demo``: the main job end to end on a generated movie with a known deformation.

The demo needs nothing but the installed package: it starts the embedded stack (unless given a
server), writes a synthetic two-photon-like movie into ``home/data/demo``, submits an aperture
registration job through the REST API, waits for it with a progress bar, and reports the quality:
the mismatch with the fixed image before and after registration, the error of the recovered
displacement against the ground truth, and the key figures of the job's quality report.

Frame 0 of the demo movie is the undeformed, noise-free sample (a template, as labs register to a
mean image) and is the fixed image, so the true ``u`` of every other frame is exactly the
generator's displacement field.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "write_demo_movie", "demo_spec", "quality_summary"]

DEMO_SHAPE = (128, 128)
DEMO_GRIDSIZE = (5, 5)
DEMO_MAXSHIFT = (8, 8)
# the generator's motion must stay inside the searched shifts, with room for the local part
DEMO_TRANSLATION, DEMO_LOCAL = 4.0, 2.0
# the local deformation varies over ~2.5 node spacings, a scale the 5x5 grid can represent (with
# the generator's default, a third of the frame, the demo would measure the grid, not registration)
DEMO_SMOOTHNESS = 80.0
DEMO_BIAS = 100.0


def write_demo_movie(folder, frames: int, seed: int = 0) -> tuple[Path, np.ndarray]:
    """Write ``movie.tif`` (template + ``frames`` deformed noisy frames) and the true displacement.

    Returns
    -------
    path : Path
        The TIFF movie, axes ``TYX``, uint16, ``frames + 1`` frames.
    u_true : ndarray, (frames, *DEMO_SHAPE, 2)
        Dense displacement of frames ``1..frames`` relative to frame 0 (also saved as
        ``u_true.npy``).
    """
    import tifffile

    from blockreg.synthetic import make_movie

    if frames < 1:
        raise ValueError(f"frames: must be at least 1, got {frames}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    movie, fixed_clean, u_true = make_movie(DEMO_SHAPE, frames, max_translation=DEMO_TRANSLATION,
                                            max_local=DEMO_LOCAL, smoothness=DEMO_SMOOTHNESS,
                                            bias=DEMO_BIAS, seed=seed)
    template = np.rint(fixed_clean).astype(movie.dtype)
    path = folder / "movie.tif"
    tifffile.imwrite(path, np.concatenate([template[None], movie]), photometric="minisblack",
                     metadata={"axes": "TYX"})
    np.save(folder / "u_true.npy", u_true.astype(np.float32))
    return path, u_true


def demo_spec(movie_path, frames: int) -> dict:
    """The demo's job spec: register frames 1..frames of the movie to frame 0."""
    return {
        "name": "blockreg demo",
        "input": {"path": str(movie_path), "frames": [1, frames + 1]},
        "fixed_index": 0,
        "preprocess": {"bias": DEMO_BIAS, "sigma_lp": 1.0, "sigma_hp": 16.0},
        "params": {"gridsize": list(DEMO_GRIDSIZE), "maxshift": list(DEMO_MAXSHIFT),
                   "lambda": 1e-3},
        "monitor": ["u", "mismatch", "warped"],
    }


def _mismatch_ratio(fixed, moving) -> float:
    from blockreg.reg import mismatch_zeroshift

    num, denom = mismatch_zeroshift(fixed, moving)
    return float(num) / float(denom)


def quality_summary(results, movie_path, spec: dict, u_true) -> dict:
    """Mismatch before/after and displacement error of a finished demo job.

    Parameters
    ----------
    results : zarr.Group
        The job's output store (``fixed``, ``u``, ``warped`` and the ``blockreg`` attributes).
    movie_path : path-like
        The demo movie (frame 0 is the fixed image).
    spec : dict
        The submitted spec (its preprocessing is applied to the raw frames).
    u_true : ndarray, (T, *shape, N)
        Dense true displacement of the registered frames.

    Returns
    -------
    dict
        ``mismatch_before``, ``mismatch_after`` (means over frames of the zero-shift mismatch with
        the preprocessed fixed image), ``u_rmse`` and ``motion_rms`` (pixels, at the grid nodes).
    """
    from blockreg import PreprocessSNF, open_series
    from blockreg.synthetic import grid_truth

    preprocess = PreprocessSNF.from_dict(spec["preprocess"])
    from blockreg.store import member

    fixed = np.asarray(member(results, "fixed")[:])
    warped = member(results, "warped")
    series = open_series(movie_path)
    frames = range(*spec["input"]["frames"])
    before = [_mismatch_ratio(fixed, preprocess(series[t])) for t in frames]
    after = [_mismatch_ratio(fixed, np.asarray(warped[i])) for i in range(len(frames))]

    nodes = tuple(np.asarray(n, dtype=np.float64) for n in results.attrs["blockreg"]["nodes"])
    truth = grid_truth(u_true, nodes)
    u = np.asarray(results["u"][:], dtype=np.float64)
    return {
        "mismatch_before": float(np.mean(before)),
        "mismatch_after": float(np.mean(after)),
        "u_rmse": float(np.sqrt(np.mean(np.sum((u - truth) ** 2, axis=-1)))),
        "motion_rms": float(np.sqrt(np.mean(np.sum(truth ** 2, axis=-1)))),
    }


def _print_report(client, job_id: int, out) -> None:
    """The quality report's key figures (the report is computed when the job finishes)."""
    from blockreg.client import ApiError
    from blockreg.qc.text import bound_warning, key_figures

    try:
        report = client.report(job_id)
    except (ApiError, ConnectionError, TimeoutError) as exc:
        print(f"quality report: not available ({exc})", file=out)
        return
    print("quality report (`blockreg report {0} --out report.html` for the page):"
          .format(job_id), file=out)
    for line in key_figures(report):
        print(f"  {line}", file=out)
    warning = bound_warning(report)
    if warning:
        print(warning, file=out)
    out.flush()


def run_demo(home=None, frames: int = 12, workers: int = 2, keep_running: bool = False,
             server: str | None = None, port: int = 0, out=None) -> int:
    """Run the demo; return the exit code (0 when the job succeeded).

    Parameters
    ----------
    home : path-like, optional
        The embedded stack's folder (default: ``$BLOCKREG_HOME`` or ``~/.blockreg``). The movie
        goes to ``home/data/demo``.
    frames : int
        Frames to register.
    workers : int
        Worker processes of the embedded stack.
    keep_running : bool
        Keep the embedded stack up after the demo, until Ctrl-C.
    server : str, optional
        Use this coordinator instead of starting a stack (it must see ``home``'s files). By
        default the stack already running in ``home`` is used, else one is started.
    port : int
        Port of the embedded coordinator (0: a free one).
    out : file, optional
        Where the report goes (default stdout); the progress bar goes to stderr.
    """
    from blockreg import Client

    from .cli import CliError, _call, wait_with_progress
    from .embedded import EmbeddedStack, default_home, running_stack

    out = out or sys.stdout
    home = Path(home).expanduser().resolve() if home else default_home()
    if server is None and running_stack(home):  # `blockreg up` already serves this home
        server = running_stack(home)["url"]
    with contextlib.ExitStack() as stack:
        own_stack = server is None
        if own_stack:
            print(f"starting the embedded stack in {home} ...", file=out, flush=True)
            try:
                server = stack.enter_context(EmbeddedStack(home, port=port, workers=workers)).url
            except RuntimeError as exc:
                raise CliError(str(exc)) from None
        movie_path, u_true = write_demo_movie(home / "data" / "demo", frames)
        spec = demo_spec(movie_path, frames)
        client = Client(server)
        started = time.perf_counter()
        job_id = _call(client.submit, spec)
        print(f"submitted job {job_id} to {server}: {frames} frames of {DEMO_SHAPE}", file=out,
              flush=True)
        status = wait_with_progress(client, job_id)
        elapsed = time.perf_counter() - started
        if status.get("state") != "succeeded":
            print(f"job {job_id} {status.get('state')}: {status.get('error') or 'see the logs'}",
                  file=out)
            return 1
        results = _call(client.results, job_id)
        q = quality_summary(results, movie_path, spec, u_true)
        print(f"results: {status.get('output_path')}", file=out)
        print(f"quality: mismatch {q['mismatch_before']:.4f} -> {q['mismatch_after']:.4f} "
              f"(mean over {frames} frames), displacement RMSE at the grid nodes "
              f"{q['u_rmse']:.2f} px vs ground truth "
              f"(true motion {q['motion_rms']:.2f} px RMS), {elapsed:.1f} s", file=out, flush=True)
        _print_report(client, job_id, out)
        if keep_running and own_stack:
            print(f"the stack keeps running at {server}; Ctrl-C stops it", file=out, flush=True)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    return 0
