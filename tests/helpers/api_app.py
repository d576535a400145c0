"""Helpers of the API tests: a spec for the fake movie, and running every dispatched batch."""
from __future__ import annotations


def spec_for(path, **changes):
    """A spec of the real "apertures" algorithm for the fake movie."""
    spec = {"name": "test", "input": {"path": str(path)},
            "params": {"gridsize": [3, 2], "maxshift": [2, 2], "lambda": 0.01},
            "preprocess": {"bias": 100}}
    for key, value in changes.items():
        spec[key] = value
    return spec


def toy_spec_for(path, **changes):
    """The same job for the toy algorithm "mean-shift" (helpers.service_fakes.MEAN_SHIFT)."""
    return spec_for(path, **{"algorithm": "mean-shift", "params": {"gridsize": [3, 2]}, **changes})


def run_all(app, broker):
    """Dispatch and run every batch, as the dispatcher thread and Celery workers would."""
    from blockreg.orchestrate.dispatch import dispatch_once
    from blockreg.orchestrate.frames import run_frames

    sessions = app.extensions["blockreg"].sessions
    while True:
        with sessions() as session:
            sent = dispatch_once(session, broker,
                                 max_batches=app.config["MAX_BATCHES_PER_JOB"])
        if not sent:
            return
        for name, (job_id, frames), queue in broker.sent[-sent:]:
            assert name == "blockreg.register_frames" and queue == "cpu"
            run_frames(job_id, frames, worker="test-worker", sessions=sessions)
