"""The service's database: SQLAlchemy 2 models, engine helpers and atomic state transitions."""
from .models import Base, Frame, FrameScalar, FrameState, Job, JobState, WorkerHeartbeat
from .session import database_url, make_engine, session_factory

__all__ = ["Base", "Job", "Frame", "FrameScalar", "WorkerHeartbeat", "JobState", "FrameState",
           "make_engine", "session_factory", "database_url"]
