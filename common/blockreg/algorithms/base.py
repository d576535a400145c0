"""The algorithm interface: what a worker (in-process runner, pool process, Celery task) calls.

This is the original's ``RegisterWorkerShell`` (``AbstractWorker`` with ``init!``/``worker``/
``close!`` and ``ArrayDecl``), with ``monitor`` reduced to the set of variable names a caller wants
(reference §6.1).  An algorithm holds only parameters; :meth:`Algorithm.prepare` builds the cached,
per-process context (FFT plans, penalty matrices) and :meth:`Algorithm.close` drops it, so one object
can be pickled to a worker process, prepared there once, and reused for many frames.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError


@dataclass(frozen=True)
class ArrayDecl:
    """Declaration of one monitorable variable: its per-frame shape and dtype.

    Parameters
    ----------
    shape : tuple of int
        Shape of the value for one frame; ``()`` for a scalar.
    dtype : str
        NumPy dtype name, e.g. ``"float64"``.
    """

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        # normalise ("f8" -> "float64") so declarations compare equal however they were written
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)


class Algorithm(ABC):
    """A per-frame registration algorithm.

    Subclasses keep their parameters as attributes and put everything expensive to build into
    :meth:`prepare`.  The contract:

    - :meth:`declare` lists every variable :meth:`run_frame` can return, with per-frame shape.
    - :meth:`prepare` is idempotent: calling it again on a prepared object does nothing.
    - :meth:`run_frame` prepares on demand and returns exactly the ``wanted`` names.
    - :meth:`close` drops the cached context; :meth:`prepare` may follow (objects are reusable).
    - :meth:`describe` returns JSON-able parameters, stored with the results.
    """

    @abstractmethod
    def declare(self) -> dict[str, ArrayDecl]:
        """Every monitorable variable and its per-frame declaration."""

    def prepare(self) -> None:
        """Build the cached per-process context (default: nothing to build)."""

    @abstractmethod
    def run_frame(self, frame, t: int, wanted) -> dict:
        """Register one frame.

        Parameters
        ----------
        frame : ndarray
            One raw frame, spatial axes only.
        t : int
            Its time index in the source series (for bookkeeping; results must not depend on it).
        wanted : iterable of str
            Names from :meth:`declare` to compute and return.

        Returns
        -------
        dict
            ``name -> ndarray or float`` for exactly the names in ``wanted``.
        """

    def close(self) -> None:
        """Drop the cached context (default: set each of :meth:`_context_attributes` to None)."""
        for key in self._context_attributes():
            setattr(self, key, None)

    @abstractmethod
    def describe(self) -> dict:
        """JSON-able parameters (stored in the results' attributes)."""

    def check_wanted(self, wanted) -> tuple[str, ...]:
        """Validate requested names against :meth:`declare`; return them as a tuple.

        Raises
        ------
        ParameterError
            Field ``monitor``, if a name is not declared; the message lists the valid names.
        """
        if isinstance(wanted, str):
            wanted = (wanted,)
        wanted = tuple(wanted)
        valid = self.declare()
        unknown = [name for name in wanted if name not in valid]
        if unknown:
            raise ParameterError("monitor", f"unknown variable(s) {unknown} for "
                                            f"{type(self).__name__}; valid names are {sorted(valid)}")
        return wanted

    # -- for algorithms that register each frame to ``self.fixed`` after ``self.preprocess`` ----

    def describe_preprocess(self) -> dict | None:
        """``self.preprocess`` as JSON: its ``to_dict()``, else its repr, None when unset."""
        pp = self.preprocess
        if pp is None:
            return None
        return pp.to_dict() if hasattr(pp, "to_dict") else {"callable": repr(pp)}

    def start_frame(self, frame, t: int, wanted):
        """Begin :meth:`run_frame`: check ``wanted``, prepare, and load the raw frame ``t`` on the
        fixed image's array module; returns ``(wanted, raw)``.

        Raises
        ------
        ValueError
            Naming ``frame`` for a frame of another shape than the fixed image or without a
            finite pixel.
        """
        from .._backend import array_module

        wanted = self.check_wanted(wanted)
        self.prepare()
        xp = array_module(self.fixed)
        raw = xp.asarray(frame)
        self._check_frame(raw, "frame")
        if raw.dtype.kind == "f" and not bool(xp.isfinite(raw).any()):
            raise ValueError(f"frame: frame {t} has no finite pixels (all NaN)")
        return wanted, raw

    def preprocessed(self, raw):
        """``raw`` after ``self.preprocess``; a ValueError naming ``preprocess`` if it changed
        the shape."""
        from .._backend import array_module

        moving = array_module(self.fixed).asarray(
            self.preprocess(raw) if self.preprocess is not None else raw)
        self._check_frame(moving, "preprocess")
        return moving

    def _check_frame(self, frame, what):
        if frame.ndim != self.fixed.ndim:
            raise ValueError(
                f"{what}: has {frame.ndim} dimensions, the fixed image has {self.fixed.ndim}"
            )
        if tuple(frame.shape) != tuple(self.fixed.shape):
            raise ValueError(f"{what}: shape {tuple(frame.shape)} differs from the fixed image's "
                             f"{tuple(self.fixed.shape)}")

    def __getstate__(self):
        # The prepared context (FFT buffers, plans) is process-local and often large: never pickle
        # it; a worker process re-prepares from the parameters.
        state = self.__dict__.copy()
        for key in self._context_attributes():
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for key in self._context_attributes():
            setattr(self, key, None)

    def _context_attributes(self) -> tuple[str, ...]:
        """Names of instance attributes that hold the prepared context (not pickled)."""
        return ("_context",)
