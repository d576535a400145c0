"""The algorithm registry: which algorithms a job spec may name, and how a job builds each one.

A job spec's ``algorithm`` is a name registered here, and its ``params`` are validated by that
name's model. Everything that depends on the algorithm is generated from the registry: the job
spec's variants (:class:`blockreg.jobspec.JobSpec`), the input-dependent spec checks, the options
of ``blockreg register`` and the OpenAPI document of the API. Adding an algorithm is one module
that builds an :class:`AlgorithmEntry` and registers it (see ``blockreg/jobkinds/apertures.py``
and docs/jobspec.md, "Adding an algorithm").

The built-in algorithms (:data:`BUILTIN_MODULES`) and the modules of the setting
``algorithm_modules`` (``BLOCKREG_ALGORITHM_MODULES``, comma-separated: plugins, and test
algorithms that real worker processes must know) are imported on the first look-up; importing a
module registers its algorithms.
"""
from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AlgorithmEntry", "register_algorithm", "unregister_algorithm", "registered",
           "get_algorithm", "algorithm_names", "UnknownAlgorithm", "BUILTIN_MODULES"]

BUILTIN_MODULES = ("blockreg.jobkinds.apertures", "blockreg.jobkinds.apertures_mismatch",
                   "blockreg.jobkinds.rigid")


@dataclass(frozen=True, eq=False)  # identity: JobSpec caches one spec model per entry
class AlgorithmEntry:
    """One registered algorithm.

    Attributes
    ----------
    name : str
        The job spec's ``algorithm`` value (e.g. ``"apertures"``).
    params : type
        Pydantic model of the spec's ``params``: the shape of the parameters only (types, list
        lengths, signs inherent in the type). Rules that need the image or belong to the algorithm
        are the algorithm's: its constructor raises :class:`~blockreg.errors.ParameterError`, and
        the spec checks report that as ``params.<field>``. Field descriptions become the help of
        ``blockreg register``'s options and the OpenAPI document's descriptions.
    build : callable
        ``build(params, fixed, nodes, preprocess) -> Algorithm``: the algorithm of a job whose
        (preprocessed, ROI-cropped) fixed image is ``fixed``. Raises ParameterError whose field
        is a field of ``params`` (``"maxshift.1"``).
    nodes : callable
        ``nodes(params, image_shape) -> tuple of 1-D arrays``: the grid nodes the algorithm's
        displacements live on (stored with the results). Raises ParameterError like ``build``.
    variables : mapping of str to str
        Every variable the algorithm may declare (which ones it does can depend on its
        parameters) -> a short description, for the docs and ``--monitor``'s help.
    summary : str
        One line saying what the algorithm does.
    default_monitor : tuple of str
        The spec's ``monitor`` when it gives none.
    """

    name: str
    params: type
    build: Callable[..., Any]
    nodes: Callable[..., tuple]
    variables: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    default_monitor: tuple[str, ...] = ("u", "mismatch")


class UnknownAlgorithm(LookupError):
    """A name that no registered algorithm has."""

    def __init__(self, name):
        known = ", ".join(repr(n) for n in algorithm_names()) or "none"
        super().__init__(f"unknown algorithm {name!r}; registered: {known}")
        self.name = name


_entries: dict[str, AlgorithmEntry] = {}
_loaded = False


def _load() -> None:
    # Import the built-ins and the configured extra modules once, on first use: importing blockreg
    # must not import every algorithm's stack, and a worker process finds the same algorithms as
    # the coordinator that accepted the job by reading the same setting.
    from . import settings

    global _loaded
    if _loaded:
        return
    for module in (*BUILTIN_MODULES, *settings.get("algorithm_modules")):
        try:
            importlib.import_module(module)  # a module being imported is found in sys.modules
        except ImportError as exc:
            raise ImportError(f"{settings.env_name('algorithm_modules')}: cannot import "
                              f"{module!r}: {exc}") from exc
    _loaded = True


def register_algorithm(entry: AlgorithmEntry, *, replace: bool = False) -> AlgorithmEntry:
    """Register ``entry`` under ``entry.name``; returns it (so a module can keep it as a name).

    Raises
    ------
    ValueError
        If the name is taken and ``replace`` is false, or ``entry`` is not an AlgorithmEntry.
    """
    if not isinstance(entry, AlgorithmEntry):
        raise ValueError(f"entry: expected an AlgorithmEntry, got {type(entry).__name__}")
    if not entry.name or not isinstance(entry.name, str):
        raise ValueError(f"entry.name: must be a non-empty string, got {entry.name!r}")
    if not replace and entry.name in _entries and _entries[entry.name] is not entry:
        raise ValueError(f"entry.name: an algorithm {entry.name!r} is already registered")
    _entries[entry.name] = entry
    return entry


def unregister_algorithm(name: str) -> None:
    """Remove the algorithm ``name`` (KeyError if there is none)."""
    _load()
    del _entries[name]


@contextlib.contextmanager
def registered(entry: AlgorithmEntry) -> Iterator[AlgorithmEntry]:
    """Register ``entry`` for the duration of a ``with`` block (tests), then restore the previous
    state: the name unregistered, or the entry it replaced registered again."""
    _load()
    previous = _entries.get(entry.name)
    register_algorithm(entry, replace=True)
    try:
        yield entry
    finally:
        if previous is None:
            _entries.pop(entry.name, None)
        else:
            _entries[entry.name] = previous


def get_algorithm(name: str) -> AlgorithmEntry:
    """The entry registered as ``name``.

    Raises
    ------
    UnknownAlgorithm
        (a LookupError) naming the registered algorithms.
    """
    _load()
    try:
        return _entries[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from a JSON document
        raise UnknownAlgorithm(name) from None


def algorithm_names() -> tuple[str, ...]:
    """Names of the registered algorithms, in registration order (built-ins first)."""
    _load()
    return tuple(_entries)
