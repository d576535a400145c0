"""Fair sharing of the workers between users and their jobs (pure functions, no database).

The broker's queue is first in, first out: whatever waits in it runs first. So the dispatcher
keeps few messages waiting (``max_queued_batches`` over all jobs) and hands each free place to the
user with the fewest frames in flight, then to that user's job with the fewest messages waiting;
a 100-frame job submitted while a 100,000-frame one runs gets the next free places instead of
waiting behind it.
Per-user limits bound what one user holds at once: active jobs (``user_max_jobs``; later jobs
wait, "waiting: user limit") and frames queued or running (``user_max_frames_in_flight``).

Jobs without an owner (single-user mode) count as one user.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["JobLoad", "Limits", "allocate", "jobs_over_user_limit"]


@dataclass(frozen=True)
class JobLoad:
    """What the dispatcher knows of one active job this round.

    Attributes
    ----------
    job_id : int
    owner : int or None
    queued_batches : int
        Its messages waiting in the broker (not started).
    in_flight : int
        Its frames queued or running.
    batch_frames : int
        Frames in one of its messages (its shard size).
    has_pending : bool
        It has frames not yet sent.
    """

    job_id: int
    owner: int | None
    queued_batches: int
    in_flight: int
    batch_frames: int
    has_pending: bool = True


@dataclass(frozen=True)
class Limits:
    max_queued_batches: int = 4       # over all jobs
    max_batches_per_job: int = 16     # of one job
    user_max_jobs: int = 8
    user_max_frames_in_flight: int = 512


def jobs_over_user_limit(jobs, user_max_jobs: int) -> set[int]:
    """Jobs past their owner's ``user_max_jobs`` (oldest first keep their place)."""
    by_user = defaultdict(list)
    for job in jobs:
        by_user[job.owner].append(job.job_id)
    over = set()
    for ids in by_user.values():
        over.update(sorted(ids)[user_max_jobs:])
    return over


def allocate(jobs, limits: Limits) -> dict[int, int]:
    """How many new messages each job may send this round.

    Places in the broker (``max_queued_batches`` minus what waits there) are handed out one at a
    time: to the user with the fewest frames in flight, queued or running (ties: fewer messages
    waiting, then the oldest job), then to that user's job with the fewest messages waiting
    (ties: the oldest). So a user whose long job holds the workers yields every free place to a
    colleague with less in flight, until their shares are even. A job past
    its owner's job limit, at ``max_batches_per_job``, or whose next message would take its owner
    past ``user_max_frames_in_flight`` gets none; a user with nothing in flight may always send
    one message, however large.

    Parameters
    ----------
    jobs : sequence of JobLoad
    limits : Limits

    Returns
    -------
    dict of int -> int
        New messages per job id (every job listed, 0 for most).
    """
    jobs = list(jobs)
    grant = {job.job_id: 0 for job in jobs}
    room = limits.max_queued_batches - sum(job.queued_batches for job in jobs)
    over = jobs_over_user_limit(jobs, limits.user_max_jobs)
    waiting = defaultdict(int)    # messages waiting per user, granted ones included
    in_flight = defaultdict(int)  # frames in flight per user, granted ones included
    for job in jobs:
        waiting[job.owner] += job.queued_batches
        in_flight[job.owner] += job.in_flight
    candidates = [job for job in jobs if job.has_pending and job.job_id not in over]

    def may_send(job) -> bool:
        if job.queued_batches + grant[job.job_id] >= limits.max_batches_per_job:
            return False
        used = in_flight[job.owner]
        return used == 0 or used + job.batch_frames <= limits.user_max_frames_in_flight

    while room > 0:
        eligible = [job for job in candidates if may_send(job)]
        if not eligible:
            break
        job = min(eligible, key=lambda j: (in_flight[j.owner], waiting[j.owner],
                                           min(k.job_id for k in candidates
                                               if k.owner == j.owner),
                                           j.queued_batches + grant[j.job_id], j.job_id))
        grant[job.job_id] += 1
        waiting[job.owner] += 1
        in_flight[job.owner] += job.batch_frames
        room -= 1
    return grant
