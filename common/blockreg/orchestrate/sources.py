"""A spec's ``source.job`` (a warp job's deformations) resolved to that job's results store."""
from __future__ import annotations

from ..jobspec import SpecError
from ..states import ACTIVE_JOB_STATES

__all__ = ["resolve_source"]


def resolve_source(session, data, visible=None):
    """Return ``data`` with ``source.path`` set from ``source.job``, for the kinds that have one.

    ``visible(job)`` says whether the submitting user may see a job (default: every job); one
    they may not reads as a missing one, as everywhere in the API.

    Raises
    ------
    SpecError
        On ``source.job``: no such job, or the job has not finished.
    """
    from ..db.queries import get_job

    if not isinstance(data, dict) or data.get("kind") in (None, "register"):
        return data
    source = data.get("source")
    if not isinstance(source, dict) or source.get("path") is not None:
        return data
    job_id = source.get("job")
    if not isinstance(job_id, int) or isinstance(job_id, bool) or not 0 < job_id < 2**31:
        return data  # the model reports the type
    job = get_job(session, job_id)
    if job is None or (visible is not None and not visible(job)):
        raise SpecError([{"field": "source.job", "problem": f"no job {job_id}"}])
    if job.state in ACTIVE_JOB_STATES:
        raise SpecError([{"field": "source.job", "problem": f"job {job_id} is {job.state}; "
                                                           "wait until it has finished"}])
    return {**data, "source": {**source, "path": job.output_path}}
