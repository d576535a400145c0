"""blockreg: aperture-based deformable registration of imaging time series, as a library and a service.

The names here are the ones a user needs: register a movie, read the results, build a
deformation and warp with it, run the pieces of the pipeline on their own, submit a job.  Every
other function of the algorithm layer is in :mod:`blockreg.reg`, and the subpackages
(``blockreg.io``, ``blockreg.store``, ``blockreg.synthetic``, ...) are reachable as attributes.
Everything is imported lazily, so ``import blockreg`` stays cheap in processes that only need one
part (a Celery worker never pays for Flask, the coordinator never for the optimiser) and never
imports Flask, Celery or SQLAlchemy.

Quick start::

    from blockreg import Apertures, PreprocessSNF, register
    pp = PreprocessSNF(bias=100, sigma_lp=0, sigma_hp=(10, 10))
    alg = Apertures(pp(fixed), nodes, maxshift=(10, 10), lam=1e-3, preprocess=pp)
    out = register(movie, alg, monitor=("u", "mismatch"))
"""
from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS = {
    # registering a movie and reading the results
    "Apertures": ".algorithms.apertures",
    "AperturesMismatch": ".algorithms.apertures_mismatch",
    "Rigid": ".algorithms.rigid",
    "Algorithm": ".algorithms.base",
    "ArrayDecl": ".algorithms.base",
    "register": ".runner",
    "open_series": ".io",
    "open_results": ".store",
    "read_results": ".store",
    "PreprocessSNF": ".reg.preprocess",
    # deformations
    "GridDeformation": ".reg.deformation",
    "nodes_for_shape": ".reg.deformation",
    "compose": ".reg.deformation",
    "tform_to_deformation": ".reg.deformation",
    "warp": ".reg.warp",
    "warp_to_file": ".reg.warp",
    "medfilt": ".reg.timeseries",
    "tinterpolate": ".reg.timeseries",
    # the pipeline's steps, for users who assemble their own
    "mismatch": ".reg.mismatch",
    "mismatch_apertures": ".reg.mismatch",
    "MismatchPlan": ".reg.mismatch",
    "register_translate": ".reg.mismatch",
    "fixed_lambda": ".reg.optimize",
    "auto_lambda": ".reg.autolambda",
    "optimize_rigid": ".reg.rigid",
    # jobs and the service
    "JobSpec": ".jobspec",
    "Client": ".client",
    # errors
    "ParameterError": ".errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    # subpackages and modules (blockreg.reg, blockreg.io, ...) on first attribute access
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'blockreg' has no attribute {name!r}")


def __dir__():
    return __all__
