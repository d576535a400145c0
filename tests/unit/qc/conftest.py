"""A small registered job shared by the report tests.

The movie is built like ``blockreg demo``'s (a template, then frames deformed by a known smooth
displacement with shot noise) and registered by the in-process runner with a spec like
``demo_spec``: frame 0 (the template) is the fixed image.
"""
from __future__ import annotations

import numpy as np
import pytest

FRAMES = 4
SHAPE = (128, 128)
MAXSHIFT = (8, 8)


def write_movie(folder, frames=FRAMES, seed=0):
    """``movie.npy`` (template + ``frames`` deformed frames, uint16) and the true displacement."""
    from blockreg.synthetic import make_movie

    movie, template, u_true = make_movie(SHAPE, frames, max_translation=4.0, max_local=2.0,
                                         smoothness=80.0, bias=100.0, seed=seed)
    path = folder / "movie.npy"
    np.save(path, np.concatenate([np.rint(template).astype(movie.dtype)[None], movie]))
    return path, u_true


def job_spec(movie, out, frames=FRAMES, monitor=("u", "mismatch", "warped"), maxshift=MAXSHIFT):
    return {
        "name": "qc test job",
        "input": {"path": str(movie), "frames": [1, frames + 1]},
        "fixed_index": 0,
        "preprocess": {"bias": 100.0, "sigma_lp": 1.0, "sigma_hp": 16.0},
        "params": {"gridsize": [5, 5], "maxshift": list(maxshift), "lambda": 1e-3},
        "monitor": list(monitor),
        "output": {"path": str(out)},
    }


@pytest.fixture(scope="session")
def make_spec():
    """The spec builder (a fixture: test modules cannot import conftest under importlib mode)."""
    return job_spec


@pytest.fixture(scope="session")
def movie(tmp_path_factory):
    return write_movie(tmp_path_factory.mktemp("qc_movie"))


@pytest.fixture(scope="session")
def demo_job(movie, tmp_path_factory):
    """``(store path, spec)`` of a finished 4-frame job that stored ``warped``."""
    from blockreg.jobs import run_inprocess

    spec = job_spec(movie[0], tmp_path_factory.mktemp("qc_job") / "job.zarr")
    run_inprocess(spec)
    return spec["output"]["path"], spec


@pytest.fixture(scope="session")
def demo_report(demo_job):
    """``(analysis, figures, html)`` of the demo job, computed once."""
    pytest.importorskip("matplotlib")
    from blockreg.qc import analyse, make_figures, render_html

    analysis = analyse(demo_job[0])
    figures = make_figures(analysis.report, analysis.images)
    return analysis, figures, render_html(analysis.report, figures)
