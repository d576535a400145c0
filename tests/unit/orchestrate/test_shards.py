"""enqueue_shards: one message per idle shard, reading only the pending rows it needs."""
from __future__ import annotations

from sqlalchemy import event, update

from blockreg.db import ops
from blockreg.db.models import Frame
from blockreg.orchestrate.shards import enqueue_shards
from blockreg.states import FrameState


def _statements(sessions):
    seen = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *a: seen.append(statement))
    return seen


def _set_state(session, job_id, indices, state):
    session.execute(update(Frame).where(Frame.job_id == job_id, Frame.index.in_(indices))
                    .values(state=state))
    session.commit()


def test_a_job_without_room_reads_no_frame_list(sessions):
    with sessions() as s:
        job = ops.create_job(s, spec={}, frames=range(1000), output_path="/o")
        assert len(enqueue_shards(s, job, 2)) == 2
        seen = _statements(sessions)
        assert enqueue_shards(s, job, 2) == []  # both places taken
    pending_reads = [q for q in seen if "frame.state = " in q and "ORDER BY" in q]
    assert pending_reads == []


def test_the_pending_read_is_bounded_and_skips_busy_shards(sessions):
    with sessions() as s:
        job = ops.create_job(s, spec={}, frames=range(256), output_path="/o")  # 16 per shard
        _set_state(s, job, [0], FrameState.RUNNING.value)     # shard 0 busy, 15 still pending
        _set_state(s, job, range(16, 26), FrameState.DONE.value)  # shard 1 partly done
        seen = _statements(sessions)
        batches = enqueue_shards(s, job, 2)
    assert batches == [list(range(26, 32)), list(range(32, 48))]
    assert any("LIMIT" in q for q in seen if "ORDER BY" in q)
