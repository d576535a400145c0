"""Phases after the frames: the whole-series solve of a two-stage job, in windows, as tasks.

A job of ``"apertures_mismatch"`` with ``params.lambda``, or of kind ``"optimize"`` (the solve
on an existing two-stage store; its one frame task chooses lambda), is created with ``job.phase =
"optimize"`` (:func:`mark_phase`, inside the submit's transaction), so
:func:`blockreg.db.ops.finalize_if_complete` leaves it active when its frames are done.  Then:

1. the dispatcher (:func:`advance_phase`, each round) starts the phase: with a lambda range, one
   task (window index -1) runs auto-lambda on a few frames first; then it plans the overlapping
   windows, creates the scratch arrays in the job's store and sends one task per window
   (``blockreg.solve_series_window``);
2. each window task (:func:`run_window`) reads only its window's ``cs``, ``Qs`` and ``mmis`` from
   the store, solves it and writes its result to its own chunk of the scratch array (one writer
   per chunk), then its done-marker; ``job.phase_done`` counts the markers (the progress shown in
   the job's status, out of ``phase_total`` windows);
3. the first to see every marker set (a window task, or the dispatcher) claims the stitch with one
   conditional UPDATE (``phase: optimize -> stitching``), stitches, writes ``u`` and ends the phase
   (``done``); the job is then finalised as usual.

Lost messages are re-sent after the running lease (windows are idempotent: a window whose marker
is set is skipped); a stitch whose process died is reclaimed after the same lease.  A window that
raises fails the job with its message.  The arithmetic is :mod:`blockreg.seriesjob`'s, shared with
``run_inprocess``.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
from sqlalchemy import select, update

from ..db.models import Job
from ..states import ACTIVE_JOB_STATES, JobState

__all__ = ["PHASE_OPTIMIZE", "PHASE_STITCHING", "PHASE_DONE", "mark_phase", "advance_phase",
           "run_window", "finish_phase_if_complete", "DONE_ARRAY"]

log = logging.getLogger(__name__)

PHASE_OPTIMIZE = "optimize"
PHASE_STITCHING = "stitching"
PHASE_DONE = "done"
#: One int8 per window, set once the window's result is in the scratch array.
DONE_ARRAY = "series_windows_done"
#: The "window" index of the task that chooses lambda (auto-lambda runs on a worker, never in
#: the dispatcher), and the store attribute it writes.
LAMBDA_TASK = -1
LAMBDA_ATTR, LAMBDA_T_ATTR = "series_lambda", "series_lambda_t"


def _utcnow():
    from ..db.ops import utcnow

    return utcnow()


def mark_phase(session, job_id: int, spec) -> None:
    """Give a new job its phase, if its spec has one (no commit: the caller's transaction)."""
    from ..seriesjob import series_settings

    if series_settings(spec) is not None:
        session.execute(update(Job).where(Job.id == job_id)
                        .values(phase=PHASE_OPTIMIZE, phase_done=0, phase_total=0)
                        .execution_options(synchronize_session=False))


def _member(group, name):
    from ..warpjob import _member as member

    return member(group, name)


def _settings_and_nodes(job, group):
    from ..seriesjob import series_settings

    settings = series_settings(_spec(job))
    meta = group.attrs["blockreg"]
    nodes = tuple(np.asarray(n, dtype=np.float64) for n in meta["nodes"])
    return settings, nodes


def _fits(job, group):
    """``cs``, ``Qs``, ``mmis`` of a job: in its own store, or an optimize job's source store."""
    from ..seriesjob import mismatch_store
    from ..store import open_store

    path = mismatch_store(_spec(job), job.output_path)
    source = group if path == job.output_path else open_store(path, "r")
    return tuple(_member(source, name) for name in ("cs", "Qs", "mmis"))


def _spec(job):
    from ..jobspec import JobSpec

    return JobSpec.model_validate(job.spec)


def _fail_job(session, job_id: int, message: str) -> None:
    session.rollback()
    session.execute(update(Job).where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES))
                    .values(state=JobState.FAILED.value, finished_at=_utcnow(),
                            error=message[:4000])
                    .execution_options(synchronize_session=False))
    session.commit()


def _stored(group, name, attr) -> float | None:
    """A weight a task chose: an optimize job's frame task (array ``name``), or the lambda task
    (attribute ``attr``)."""
    if name in group and np.isfinite(group[name][0]):
        return float(group[name][0])
    return group.attrs["blockreg"].get(attr)


def _weights(settings, group) -> tuple[float | None, float | None]:
    """``(lambda, lambda_t)``: the fixed ones, or those a task chose (None: not yet)."""
    lam = (_stored(group, "lambda", LAMBDA_ATTR) if isinstance(settings.lam, tuple)
           else float(settings.lam))
    lam_t = (_stored(group, "lambda_t", LAMBDA_T_ATTR) if isinstance(settings.lam_t, tuple)
             else float(settings.lam_t))
    return lam, lam_t


def _start(session, job, group, lam, lam_t) -> list[int]:
    """Plan the windows, create the scratch arrays; return the window indices."""
    from ..seriesjob import SERIES_ATTR, WINDOWS_ARRAY, plan_series_windows, series_attrs

    settings, _ = _settings_and_nodes(job, group)
    cs = _fits(job, group)[0]
    windows = plan_series_windows(int(cs.shape[0]), settings)
    length = max(len(w) for w in windows)
    shape = (len(windows), length) + tuple(cs.shape[1:])
    for name, arr_shape, chunks, dtype, fill in (
            (WINDOWS_ARRAY, shape, (1,) + shape[1:], np.float64, np.nan),
            (DONE_ARRAY, (len(windows),), (1,), np.int8, 0)):
        if name in group and tuple(group[name].shape) == arr_shape:
            continue  # a start that died after creating it: the same windows, reuse
        if name in group:
            del group[name]
        group.create_array(name, shape=arr_shape, chunks=chunks, dtype=dtype, fill_value=fill)
    meta = dict(group.attrs["blockreg"])
    meta[SERIES_ATTR] = series_attrs(lam, lam_t, windows)
    group.attrs["blockreg"] = meta
    result = session.execute(
        update(Job).where(Job.id == job.id, Job.phase == PHASE_OPTIMIZE, Job.phase_total == 0,
                          Job.state.in_(ACTIVE_JOB_STATES))
        .values(phase_total=len(windows), phase_done=0, phase_sent_at=_utcnow())
        .execution_options(synchronize_session=False))
    session.commit()
    return list(range(len(windows))) if result.rowcount == 1 else []


def _done_windows(group) -> np.ndarray:
    return np.asarray(group[DONE_ARRAY][...]) != 0


def _send(celery_app, job_id, queue, windows) -> int:
    from ..celery_app import TASK_SOLVE_WINDOW

    for index in windows:
        celery_app.send_task(TASK_SOLVE_WINDOW, args=(job_id, int(index)), queue=queue)
    return len(windows)


def advance_phase(session, celery_app, job_id: int, queue: str, *,
                  lease_s: float | None = None) -> int:
    """The dispatcher's step of a job's phase; returns the number of task messages sent.

    Nothing happens for a job without a phase, or whose frames are not all accounted for.
    """
    from ..db.queries import get_job
    from ..store import open_store

    row = session.execute(select(Job.phase, Job.phase_total, Job.phase_sent_at, Job.frames_done,
                                 Job.frames_failed, Job.frames_total)
                          .where(Job.id == job_id)).first()
    session.rollback()
    if row is None or row.phase not in (PHASE_OPTIMIZE, PHASE_STITCHING):
        return 0
    if row.frames_done + row.frames_failed < row.frames_total:
        return 0
    if lease_s is None:
        from ..settings import load

        lease_s = load().running_lease_s
    now = _utcnow()
    stale = row.phase_sent_at is None or now - row.phase_sent_at > timedelta(seconds=lease_s)
    if row.phase == PHASE_STITCHING:
        if stale:  # the stitcher died: let the next one claim it again
            session.execute(update(Job).where(Job.id == job_id, Job.phase == PHASE_STITCHING)
                            .values(phase=PHASE_OPTIMIZE)
                            .execution_options(synchronize_session=False))
            session.commit()
        return 0
    if row.frames_done == 0:  # every frame failed: nothing to solve, the job fails as it is
        session.execute(update(Job).where(Job.id == job_id).values(phase=PHASE_DONE)
                        .execution_options(synchronize_session=False))
        session.commit()
        return 0
    job = get_job(session, job_id)
    try:
        group = open_store(job.output_path, "r+")
        if row.phase_total == 0:
            settings, _ = _settings_and_nodes(job, group)
            lam, lam_t = _weights(settings, group)
            if lam is None or lam_t is None:  # auto-lambda(_t): a task of its own, then windows
                if not stale:
                    return 0  # the lambda task runs
                _touch(session, job_id, now)
                return _send(celery_app, job_id, queue, [LAMBDA_TASK])
            return _send(celery_app, job_id, queue, _start(session, job, group, lam, lam_t))
        done = _done_windows(group)
        _record_progress(session, job_id, int(done.sum()))
        if done.all():
            finish_phase_if_complete(session, job_id)
            return 0
        if stale:  # messages lost or workers gone: the missing windows again
            _touch(session, job_id, now)
            return _send(celery_app, job_id, queue, np.flatnonzero(~done))
    except Exception as exc:  # noqa: BLE001 - recorded on the job, the dispatcher goes on
        log.exception("job %s: series phase failed", job_id)
        _fail_job(session, job_id, f"series phase: {type(exc).__name__}: {exc}")
    return 0


def _touch(session, job_id: int, now) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(phase_sent_at=now)
                    .execution_options(synchronize_session=False))
    session.commit()


def _record_progress(session, job_id: int, done: int) -> None:
    session.execute(update(Job).where(Job.id == job_id, Job.phase_done < done)
                    .values(phase_done=done).execution_options(synchronize_session=False))
    session.commit()


def run_window(job_id: int, index: int, *, sessions) -> str:
    """Solve window ``index`` of a job's series phase (the window task's body).

    Returns ``"done"``, or ``"skipped"`` (job no longer in its phase, window already solved).
    """
    from ..db.queries import get_job
    from ..reg.series import solve_window
    from ..reg.windows import Window
    from ..seriesjob import SERIES_ATTR, WINDOWS_ARRAY
    from ..store import open_store

    with sessions() as session:
        job = get_job(session, job_id)
        if job is None or job.state not in ACTIVE_JOB_STATES or job.phase != PHASE_OPTIMIZE:
            return "skipped"
        try:
            group = open_store(job.output_path, "r+")
            if index == LAMBDA_TASK:
                return _choose_lambda_task(job, group)
            if group[DONE_ARRAY][index]:
                return "skipped"
            series = group.attrs["blockreg"][SERIES_ATTR]
            window = Window(*series["windows"][index])
            _, nodes = _settings_and_nodes(job, group)
            us, _ = solve_window(window, *_fits(job, group), nodes, series["lambda"],
                                 series["lambda_t"])
            group[WINDOWS_ARRAY][index, :len(window)] = us
            group[DONE_ARRAY][index] = 1  # after the data: a set marker means a whole result
            _record_progress(session, job_id, int(_done_windows(group).sum()))
        except Exception as exc:  # noqa: BLE001 - the job fails with the window's message
            log.exception("job %s: series window %s failed", job_id, index)
            _fail_job(session, job_id, f"series window {index}: {type(exc).__name__}: {exc}")
            return "failed"
        finish_phase_if_complete(session, job_id)
    return "done"


def _choose_lambda_task(job, group) -> str:
    from ..seriesjob import choose_weights, mismatch_store
    from ..store import open_store

    settings, nodes = _settings_and_nodes(job, group)
    if None not in _weights(settings, group):
        return "skipped"
    source = open_store(mismatch_store(_spec(job), job.output_path), "r")
    lam, lam_t = choose_weights(settings, *_fits(job, group), nodes,
                                _member(source, "Es") if "Es" in source else None)
    meta = dict(group.attrs["blockreg"])
    meta[LAMBDA_ATTR], meta[LAMBDA_T_ATTR] = lam, lam_t
    group.attrs["blockreg"] = meta  # the dispatcher's next round plans the windows
    return "done"


def finish_phase_if_complete(session, job_id: int) -> str | None:
    """Stitch the windows and write ``u`` once every window is solved, exactly once.

    Returns the job's final state when this call finalised it, else None.
    """
    from ..db import ops
    from ..db.queries import get_job
    from ..reg.windows import Window, stitch_windows
    from ..seriesjob import SERIES_ATTR, WINDOWS_ARRAY, write_series_u
    from ..store import open_store

    job = get_job(session, job_id)
    if job is None or job.phase != PHASE_OPTIMIZE or job.phase_total == 0:
        session.rollback()
        return None
    group = open_store(job.output_path, "r+")
    if not _done_windows(group).all():
        session.rollback()
        return None
    claimed = session.execute(
        update(Job).where(Job.id == job_id, Job.phase == PHASE_OPTIMIZE,
                          Job.state.in_(ACTIVE_JOB_STATES))
        .values(phase=PHASE_STITCHING, phase_sent_at=_utcnow())
        .execution_options(synchronize_session=False))
    session.commit()
    if claimed.rowcount != 1:
        return None
    try:
        series = group.attrs["blockreg"][SERIES_ATTR]
        windows = [Window(a, b) for a, b in series["windows"]]
        scratch = group[WINDOWS_ARRAY]
        results = [np.asarray(scratch[i, :len(w)]) for i, w in enumerate(windows)]
        nframes = windows[-1].stop
        us = stitch_windows(windows, results, nframes)
        write_series_u(group, us, series["lambda"], series["lambda_t"], windows)
    except Exception as exc:  # noqa: BLE001
        log.exception("job %s: stitching failed", job_id)
        _fail_job(session, job_id, f"series stitch: {type(exc).__name__}: {exc}")
        return None
    session.execute(update(Job).where(Job.id == job_id, Job.phase == PHASE_STITCHING)
                    .values(phase=PHASE_DONE, phase_done=Job.phase_total)
                    .execution_options(synchronize_session=False))
    session.commit()
    final = ops.finalize_if_complete(session, job_id)
    if final is not None:
        try:
            from .finish import after_finish
        except ImportError:
            return final
        after_finish(job_id, job.output_path, final)
    return final
