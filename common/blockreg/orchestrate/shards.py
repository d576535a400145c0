"""Task batches aligned to the output store's shards.

A results store keeps ``shard_frames`` frames of each array in one file (a shard), and Zarr loses
updates when two processes write the same shard at once (docs: "a full shard must be written in
one go"; reference: ecosystem.md §2).  So the unit of work is a shard: the dispatcher sends the
pending frames of one shard in one message, and only for a shard none of whose frames is queued or
running, so at most one task ever holds a shard.  A redelivered or re-sent batch holds its shard
alone as well, and rewrites only its own frames in it (Zarr reads the shard, replaces those
frames and renames the new file into place), so frames already done by an earlier batch stay.

The shard size is a function of the number of frames (:func:`blockreg.store_ngff.shard_frames`),
so the dispatcher needs no store access to know it; the store records the same value in its
``shard_frames`` attribute.
"""
from __future__ import annotations

from sqlalchemy import select

from ..db.models import Frame, Job
from ..db.ops import mark_queued
from ..states import ACTIVE_JOB_STATES, FrameState
from ..store_ngff import shard_frames

__all__ = ["shard_batches", "enqueue_shards"]

_IN_FLIGHT = (FrameState.QUEUED.value, FrameState.RUNNING.value)


def shard_batches(pending, busy, shard: int, limit: int) -> list[list[int]]:
    """Group ``pending`` frame indices by shard, leaving out shards in ``busy``.

    Parameters
    ----------
    pending : iterable of int
        Pending output positions, in order.
    busy : set of int
        Shard numbers with a frame queued or running.
    shard : int
        Frames per shard.
    limit : int
        At most this many batches.

    Returns
    -------
    list of list of int
        One batch per shard, in shard order.
    """
    batches: dict[int, list[int]] = {}
    for index in pending:
        number = int(index) // shard
        if number in busy:
            continue
        if number not in batches:
            if len(batches) >= limit:
                break
            batches[number] = []
        batches[number].append(int(index))
    return list(batches.values())


def _in_flight(session, job_id: int, shard: int) -> tuple[set[int], set[int]]:
    """Shards with a frame in flight, and of those the ones with a frame still queued."""
    rows = session.execute(select(Frame.index, Frame.state).where(
        Frame.job_id == job_id, Frame.state.in_(_IN_FLIGHT))).all()
    busy = {index // shard for index, _ in rows}
    queued = {index // shard for index, state in rows if state == FrameState.QUEUED.value}
    return busy, queued


def enqueue_shards(session, job_id: int, max_batches: int) -> list[list[int]]:
    """Move the pending frames of up to ``max_batches`` idle shards to ``queued``.

    A shard is idle when none of its frames is queued or running.  Also marks a queued job
    running.  The caller sends one message per returned batch after this commits (and gives a
    batch back with :func:`blockreg.db.ops.release_frames` if sending fails).

    Returns
    -------
    list of list of int
        The frames moved, one list per shard.
    """
    total = session.scalar(select(Job.frames_total).where(
        Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES)))
    if not total or max_batches <= 0:
        session.rollback()
        return []
    shard = shard_frames(total)
    busy, queued = _in_flight(session, job_id, shard)
    room = max_batches - len(queued)
    if room <= 0:  # the common round of a long job: its places are taken, no frame list read
        session.rollback()
        return []
    # the first `room` idle shards lie within the first room + len(busy) shards that have a
    # pending frame, each at most `shard` rows: a 100,000-frame job reads a few hundred rows
    pending = session.scalars(select(Frame.index).where(
        Frame.job_id == job_id, Frame.state == FrameState.PENDING.value).order_by(Frame.index)
        .limit((room + len(busy)) * shard))
    batches = shard_batches(pending, busy, shard, room)
    wanted = [index for batch in batches for index in batch]
    if not wanted:
        session.rollback()
        return []
    moved = mark_queued(session, job_id, wanted)
    return [kept for kept in ([i for i in batch if i in moved] for batch in batches) if kept]
