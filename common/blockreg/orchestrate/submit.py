"""Submitting a job: plan it, reserve its output, stage the store, record the job and its frames.

The coordinator's view calls :func:`submit_job` with a validated spec and maps its two errors to
HTTP: :class:`~blockreg.jobspec.SpecError` (422, naming the field) and :class:`OutputConflict`
(409).  Nothing is deleted or overwritten that this submit did not create: the output is reserved
by an exclusive ``mkdir``, the store is built in a staging folder this submit creates exclusively
under a name no user file has (``.<name>.blockreg-staging-<random>``), and a failed submit removes
exactly the folders it made, nothing that was there before.
"""
from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from ..jobspec import JobSpec, SpecError

__all__ = ["submit_job", "OutputConflict", "default_output", "STAGING_MARK"]

# part of every staging folder's name; a user's file never carries it plus a random token
STAGING_MARK = ".blockreg-staging-"
_UNIQUE_TRIES = 1000


class OutputConflict(Exception):
    """The requested output store already exists (another submit made it meanwhile).

    Attributes
    ----------
    path : str
    errors : list of dict
        One ``{"field": "output.path", "problem": ...}`` entry, as :class:`SpecError` has.
    """

    def __init__(self, path):
        super().__init__(f"output store {path} already exists")
        self.path = str(path)
        self.errors = [{"field": "output.path", "problem": "already exists"}]


def default_output(data_dir) -> str:
    """Where a job without ``output.path`` writes: ``<data_dir>/results/job-{id}.zarr``."""
    return str(Path(data_dir).expanduser().resolve() / "results" / "job-{id}.zarr")


def submit_job(session, spec: JobSpec, *, data_dir, queue: str = "cpu",
               owner_id: int | None = None) -> int:
    """Create the output store and the job with its frame rows; return the job id.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        Committed on success, rolled back on failure.
    spec : JobSpec
        Already validated (including the checks against the input).
    data_dir : path-like
        Holds ``results/job-<id>.zarr`` when the spec names no output; an existing store there is
        not an error (ids repeat over a kept data folder): the job gets ``job-<id>-2.zarr``, ...
    queue : str
        The queue the job's frames go to.
    owner_id : int, optional
        The submitting user (None in single-user mode).

    Raises
    ------
    SpecError
        The input cannot be planned, the fixed frame is unusable (``fixed_index``), or the output
        cannot be created (``output.path``).
    OutputConflict
        The named output store exists.
    """
    from ..db import ops
    from ..store import create_store

    spec = _resolved(spec)  # what is stored, and what workers open later, is the resolved path
    plan, fixed, declarations = _plan(spec)
    output = (str(Path(spec.output.path).expanduser().resolve()) if spec.output.path is not None
              else default_output(data_dir))
    if spec.output.path is not None:
        _refuse_inside_a_store(session, Path(output))
    made = _Made()

    def make_store(job_id: int, path: str) -> str:
        target = made.reserve(Path(path), unique=spec.output.path is None)
        attrs = dict(plan.store_attrs(), job_id=job_id)
        try:
            # create_store refuses an existing path: build beside the reservation, then one rename
            # replaces the (empty) reservation with the finished store
            token = secrets.token_hex(8)
            staging = made.folder(target.with_name(f".{target.name}{STAGING_MARK}{token}"),
                                  tree=True)
            built = staging / target.name
            create_store(built, len(plan.frames), declarations, attrs=attrs, fixed=fixed,
                         spatial_axes=plan.spatial_axes, image_dtype=plan.image_dtype)
            built.replace(target)
            staging.rmdir()
        except (OSError, ValueError) as exc:
            raise _unwritable(target, exc) from None
        from .phases import mark_phase

        mark_phase(session, job_id, spec)  # in this transaction: never finalised before its phase
        return str(target)

    try:
        return ops.create_job(session, spec=spec.to_json(), frames=plan.frames, output_path=output,
                              name=spec.name, queue=queue, before_commit=make_store,
                              owner_id=owner_id)
    except BaseException:
        made.remove()  # nothing is kept for a rejected job
        raise


def _resolved(spec: JobSpec) -> JobSpec:
    """``spec`` with ``input.path`` resolved (symlinks followed once, here, at submit)."""
    if getattr(spec, "input", None) is None:  # an optimize job reads a store, not a movie
        return spec
    try:
        path = str(Path(spec.input.path).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return spec  # validation names an unusable path; planning reports what is left
    return spec.model_copy(update={"input": spec.input.model_copy(update={"path": path})})


def _refuse_inside_a_store(session, output: Path) -> None:
    """An output never goes inside another job's store: one the database knows, or any folder
    above with a ``zarr.json`` that blockreg wrote (a store of another server, a moved one)."""
    from sqlalchemy import select

    from ..db.models import Job

    above = [str(p) for p in output.parents]
    known = session.scalar(select(Job.id).where(Job.output_path.in_(above)).limit(1))
    session.rollback()
    if known is not None or any(_is_blockreg_store(Path(p)) for p in above):
        raise SpecError([{"field": "output.path",
                          "problem": "is inside another job's output store"}])


def _is_blockreg_store(folder: Path) -> bool:
    import json

    try:
        meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "blockreg" in (meta.get("attributes") or {})


def _plan(spec: JobSpec):
    from ..jobs import FixedFrameError, plan_job

    try:
        plan = plan_job(spec)
        return plan, plan.load_fixed(), plan.declarations()
    except SpecError:
        raise
    except FixedFrameError as exc:
        problem = str(exc).removeprefix("fixed_index: ")
        raise SpecError([{"field": "fixed_index", "problem": problem}]) from None
    except (ValueError, OSError) as exc:
        # validation passed, so this is the input itself
        raise SpecError([{"field": "input.path", "problem": f"cannot be planned: {exc}"}]) from None


def _unwritable(path, exc: BaseException) -> SpecError:
    why = getattr(exc, "strerror", None) or str(exc)
    return SpecError([{"field": "output.path", "problem": f"cannot create {path}: {why}"}])


class _Made:
    """The folders one submit created, so that a failure removes those and nothing else."""

    def __init__(self):
        self._folders: list[tuple[Path, bool]] = []  # (folder, with its contents), in order

    def folder(self, path: Path, *, tree: bool) -> Path:
        """``mkdir`` ``path`` exclusively (FileExistsError if anything is there) and own it.

        ``tree``: on failure remove it with its contents (a store or staging folder this submit
        fills); otherwise only if it is empty again (an ancestor made on the way).
        """
        path.mkdir()
        self._folders.append((path, tree))
        return path

    def parents(self, folder: Path) -> None:
        """Create the missing ancestors of ``folder``; own only those this call made."""
        missing = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                self.folder(path, tree=False)
            except FileExistsError:  # made meanwhile by someone else: theirs, not ours
                if not path.is_dir():
                    raise

    def reserve(self, target: Path, *, unique: bool) -> Path:
        """Create the empty folder ``target`` (the atomic claim on an output path) and return it.

        With ``unique`` an existing path is not an error: the store goes to ``<stem>-2<suffix>``,
        ``-3``, ... instead (job ids repeat: SQLite reuses the id of a rolled-back submit, and a
        new database over a kept data folder starts again at 1).
        """
        try:
            self.parents(target.parent)
        except OSError as exc:
            raise _unwritable(target, exc) from None
        candidates = [target]
        if unique:
            candidates += [target.with_name(f"{target.stem}-{n}{target.suffix}")
                           for n in range(2, _UNIQUE_TRIES)]
        for candidate in candidates:
            try:
                return self.folder(candidate, tree=True)
            except FileExistsError:
                if not candidate.exists():  # a broken symlink or a race with a deletion
                    raise _unwritable(target, OSError(0, "a file or link is in the way")) from None
            except OSError as exc:
                raise _unwritable(target, exc) from None
        raise OutputConflict(target)

    def remove(self) -> None:
        """Remove what this submit made, deepest first."""
        for path, tree in reversed(self._folders):
            if path.is_symlink() or not path.is_dir():
                continue
            if tree:
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.rmdir()  # someone may have put something there since: then it stays
                except OSError:
                    pass
        self._folders.clear()
