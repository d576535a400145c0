"""The dispatcher's fair shares: what :func:`.fairness.allocate` needs, read from the database.

One query per round over the active jobs' frames in flight (queued or running) and one over their
owners, sizes and queues; the answer is, per job, the cap on its messages waiting in the broker
that :func:`.shards.enqueue_shards` takes. Each broker queue (``cpu``, ``gpu``) shares its own
``max_queued_batches`` places.
"""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import exists, select

from ..db.models import Frame, Job
from ..settings import load as load_settings
from ..states import FrameState
from ..store_ngff import shard_frames
from .fairness import JobLoad, Limits, allocate

__all__ = ["fair_caps", "limits_from_settings"]


def limits_from_settings(max_batches: int | None = None) -> Limits:
    s = load_settings()
    return Limits(max_queued_batches=s.max_queued_batches,
                  max_batches_per_job=s.max_batches_per_job if max_batches is None
                  else max_batches,
                  user_max_jobs=s.user_max_jobs,
                  user_max_frames_in_flight=s.user_max_frames_in_flight)


def fair_caps(session, job_ids, limits: Limits) -> dict[int, int]:
    """Per job id, how many of its messages may wait in the broker after this round."""
    job_ids = list(job_ids)
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.owner_id, Job.frames_total, Job.queue)
                           .where(Job.id.in_(job_ids))).all()
    flight = session.execute(select(Frame.job_id, Frame.index, Frame.state).where(
        Frame.job_id.in_(job_ids),
        Frame.state.in_((FrameState.QUEUED.value, FrameState.RUNNING.value)))).all()
    pending = set(session.scalars(select(Job.id).where(
        Job.id.in_(job_ids),
        exists().where(Frame.job_id == Job.id, Frame.state == FrameState.PENDING.value))))
    session.rollback()
    shard = {job_id: shard_frames(max(1, total)) for job_id, _, total, _ in rows}
    in_flight = defaultdict(int)
    queued_shards = defaultdict(set)
    for job_id, index, state in flight:
        in_flight[job_id] += 1
        if state == FrameState.QUEUED.value:
            queued_shards[job_id].add(index // shard[job_id])
    # one broker queue is one line: a queue nobody consumes (no GPU worker yet) must not take
    # the places of another, so each queue shares its own places
    by_queue = defaultdict(list)
    for job_id, owner, _, queue in rows:
        by_queue[queue].append(JobLoad(job_id, owner, len(queued_shards[job_id]),
                                       in_flight[job_id], shard[job_id], job_id in pending))
    caps = {}
    for loads in by_queue.values():
        grant = allocate(loads, limits)
        caps.update({load.job_id: load.queued_batches + grant[load.job_id] for load in loads})
    return caps
