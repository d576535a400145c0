"""What happens once when a job has finished: its quality report is computed and stored.

Called by whoever's :func:`blockreg.db.ops.finalize_if_complete` call finished the job (the worker
that completed the last frame, or the dispatcher when that worker died in between), so exactly
once per job and never on an API request.  The report is a courtesy: any error is logged and the
job keeps its state.
"""
from __future__ import annotations

import logging

from ..states import JobState

__all__ = ["after_finish", "REPORT_ERROR_ATTR", "REPORT_GRACE_S"]

log = logging.getLogger(__name__)

# how long after a job finished its report may still be on its way (the API answers 409 meanwhile)
REPORT_GRACE_S = 600.0


def after_finish(job_id: int, output_path: str, state) -> bool:
    """Write the quality report of a finished job into its store; True when written.

    A cancelled job gets none (its results are incomplete on purpose).
    """
    if str(state) == JobState.CANCELLED.value:
        return False
    from ..qc import NoReport

    try:
        from ..qc import write_report

        write_report(output_path)
    except NoReport as exc:  # nothing to judge (no u, or no frame registered): say so, no trace
        log.info("job %s: no quality report: %s", job_id, exc)
        _record_failure(output_path, str(exc).removeprefix("store_path: "))
        return False
    except Exception as exc:  # noqa: BLE001 - the report never fails the job
        log.exception("job %s: the quality report could not be computed", job_id)
        _record_failure(output_path, f"{type(exc).__name__}: {exc}")
        return False
    log.info("job %s: quality report written to %s", job_id, output_path)
    return True


REPORT_ERROR_ATTR = "blockreg_report_error"


def _record_failure(output_path: str, message: str) -> None:
    """Leave the reason in the store (root attribute ``blockreg_report_error``) for the API."""
    try:
        from ..store import open_store

        open_store(output_path, "r+").attrs[REPORT_ERROR_ATTR] = message[:2000]
    except Exception:  # noqa: BLE001 - nothing more to do; the log has the reason
        log.exception("could not record the report's failure in %s", output_path)
