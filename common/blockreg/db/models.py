"""SQLAlchemy 2 models of the service's state: jobs, frame tasks, monitored scalars, workers.

The database is the single source of truth for progress (Redis only carries small task messages):
a frame is done when its row says so, and a job is finalised by one conditional UPDATE
(:func:`blockreg.db.ops.finalize_if_complete`).  No arrays are stored here; they live in the
job's Zarr store.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..states import ACTIVE_JOB_STATES, FrameState, JobState

__all__ = ["Base", "User", "Job", "Frame", "FrameScalar", "WorkerHeartbeat", "JobState", "FrameState",
           "ACTIVE_JOB_STATES", "UTCDateTime"]

# Named constraints let Alembic's batch mode (SQLite table rebuilds) drop and recreate them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

class UTCDateTime(TypeDecorator):
    """A timestamp that is an aware UTC ``datetime`` in Python on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones and hands back naive datetimes.
    Values are stored in UTC and read back with ``tzinfo=UTC``, so no caller ever compares or
    formats a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:  # naive values are UTC by convention (they come from utcnow)
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: what we stored was UTC
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict: JSON().with_variant(JSONB(), "postgresql"),
        datetime: UTCDateTime(),
    }


class User(Base):
    """A user of the API: a name, the SHA-256 of their token (never the token), admin or not."""

    __tablename__ = "user_account"  # "user" is a reserved word in PostgreSQL

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Job(Base):
    """One registration job: its spec, output store and progress counters."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # NULL: submitted in single-user mode (no authentication), or by a user since removed
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value, index=True)
    spec: Mapped[dict]
    output_path: Mapped[str] = mapped_column(Text)
    frames_total: Mapped[int] = mapped_column(Integer)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_failed: Mapped[int] = mapped_column(Integer, default=0)
    queue: Mapped[str] = mapped_column(String(32), default="cpu")
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    # a phase after the frames (a two-stage job's series solve, blockreg.orchestrate.phases):
    # NULL = none; the job is finalised only once it is "done"; progress in windows
    phase: Mapped[str | None] = mapped_column(String(16))
    phase_done: Mapped[int] = mapped_column(Integer, default=0)
    phase_total: Mapped[int] = mapped_column(Integer, default=0)
    phase_sent_at: Mapped[datetime | None]

    @property
    def elapsed_s(self) -> float | None:
        """Seconds from the first claimed frame to the end (or to now while active)."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(timezone.utc)
        return round((end - self.started_at).total_seconds(), 3)


class Frame(Base):
    """One frame task: output position ``index`` of a job, read from source time ``source_t``."""

    __tablename__ = "frame"
    __table_args__ = (
        # the dispatcher's queries: "pending frames of job J in order", "how many queued"
        Index("ix_frame_job_id_state_index", "job_id", "state", "index"),
    )

    # (job_id, index) is the primary key, hence unique: a frame exists once per job
    job_id: Mapped[int] = mapped_column(
        ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_t: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=FrameState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    # the Celery task (message) id that claimed it: a redelivery of that same message may take the
    # frame back from `running` at once instead of waiting for the running lease
    task_id: Mapped[str | None] = mapped_column(String(255))
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # read-only: scalars are written by ops.complete_frame's statements; load them explicitly
    # (queries.list_frames does) rather than one query per frame
    scalar_rows: Mapped[list["FrameScalar"]] = relationship(
        viewonly=True, lazy="raise", order_by="FrameScalar.name")

    @property
    def scalars(self) -> dict[str, float | None]:
        """The monitored scalars of this frame by name (NULL = NaN or missing)."""
        return {row.name: row.value for row in self.scalar_rows}


class FrameScalar(Base):
    """A monitored scalar of one frame (e.g. ``mismatch``, ``lambda``)."""

    __tablename__ = "frame_scalar"
    __table_args__ = (
        ForeignKeyConstraint(
            ["job_id", "index"], ["frame.job_id", "frame.index"], ondelete="CASCADE",
            name="fk_frame_scalar_frame",
        ),
    )

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class WorkerHeartbeat(Base):
    """Last sign of life of one worker process."""

    __tablename__ = "worker_heartbeat"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True)
    queues: Mapped[str] = mapped_column(String(255), default="cpu")
    device: Mapped[str] = mapped_column(String(64), default="cpu")
    last_seen: Mapped[datetime]
