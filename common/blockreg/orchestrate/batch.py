"""A worker's batch = the frames of one shard of the output store (see :mod:`.shards`).

The worker claims every frame of its batch before registering any, so the shard is visibly busy
(``running``) for as long as the task lives and the dispatcher sends none of its frames to anyone
else; the running lease outlasts the task's time limit.  Results are buffered and written to the
shard in few writes (each write of a partial shard rewrites its file); a frame is recorded done
only once its values are on disk, so a worker killed mid-batch loses nothing: its buffered frames
are still ``running`` and go back to pending after the lease (or at once when the broker
redelivers the same message).
"""
from __future__ import annotations

import time

import numpy as np
from sqlalchemy import update

from ..db.models import Frame
from ..states import FrameState

__all__ = ["claim_batch", "release_claimed", "ShardBuffer", "FLUSH_BYTES", "FLUSH_S"]

FLUSH_BYTES = 256 * 2**20   # write the buffer when it holds this much...
FLUSH_S = 5.0               # ...or holds a frame this old, so progress still shows within seconds


def claim_batch(session, job_id: int, frames, worker: str, task_id: str | None) -> dict[int, int]:
    """Claim each frame of the batch; return ``{position: source time index}`` of those claimed."""
    from ..db import ops

    return ops.claim_frames(session, job_id, frames, worker, task_id=task_id)


def release_claimed(session, job_id: int, indices, worker: str) -> int:
    """Give frames this worker claimed but did not run back to pending (the batch was stopped)."""
    indices = [int(i) for i in indices]
    if not indices:
        return 0
    result = session.execute(
        update(Frame)
        .where(Frame.job_id == job_id, Frame.index.in_(indices),
               Frame.state == FrameState.RUNNING.value, Frame.worker == worker)
        .values(state=FrameState.PENDING.value, enqueued_at=None)
        .execution_options(synchronize_session=False))
    session.commit()
    return result.rowcount


def _nbytes(values: dict) -> int:
    return sum(np.asarray(v).nbytes for v in values.values())


class ShardBuffer:
    """Registered frames waiting to be written to the store, then recorded done.

    Parameters
    ----------
    flush_bytes, flush_s : optional
        Write when the buffer holds this many bytes, or a frame this many seconds old.
    """

    def __init__(self, flush_bytes: int = FLUSH_BYTES, flush_s: float = FLUSH_S):
        self.flush_bytes, self.flush_s = flush_bytes, flush_s
        self.items: list[tuple[int, dict, float]] = []
        self._bytes = 0
        self._since = None

    def add(self, index: int, values: dict, duration_s: float) -> None:
        if not self.items:
            self._since = time.monotonic()
        self.items.append((int(index), values, duration_s))
        self._bytes += _nbytes(values)

    def due(self) -> bool:
        return bool(self.items) and (self._bytes >= self.flush_bytes
                                     or time.monotonic() - self._since >= self.flush_s)

    def flush(self, store, session, job_id: int, scalars) -> int:
        """Write every buffered frame (one write per variable), then record each done.

        Returns the number of frames recorded done by this call (not those done before).
        """
        from ..db import ops
        from ..store import write_frame_set

        items = self.items
        if not items:
            return 0
        # on an error the items stay, for the caller to record as failed
        write_frame_set(store, [i for i, _, _ in items], [v for _, v, _ in items])
        done = ops.complete_frames(session, job_id, [(index, scalars(values), duration)
                                                     for index, values, duration in items])
        self.items, self._bytes = [], 0
        return done
