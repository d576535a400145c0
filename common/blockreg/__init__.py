"""blockreg: aperture-based deformable registration of imaging time series, as a library and a service.

The public names are imported lazily, so ``import blockreg`` stays cheap in processes that only
need one part (a Celery worker never pays for Flask, the coordinator never for the optimiser).

Quick start::

    from blockreg import Apertures, PreprocessSNF, register
    pp = PreprocessSNF(bias=100, sigma_lp=0, sigma_hp=(10, 10))
    alg = Apertures(pp(fixed), nodes, maxshift=(10, 10), lam=1e-3, preprocess=pp)
    out = register(movie, alg, monitor=("u", "mismatch"))
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS = {
    # preprocessing
    "PreprocessSNF": ".reg.preprocess",
    "highpass": ".reg.preprocess",
    "lowpass": ".reg.preprocess",
    "clip_bright": ".reg.preprocess",
    "temporal_median": ".reg.preprocess",
    # mismatch
    "mismatch": ".reg.mismatch",
    "mismatch_apertures": ".reg.mismatch",
    "MismatchPlan": ".reg.mismatch",
    "mismatch_zeroshift": ".reg.mismatch",
    "register_translate": ".reg.mismatch",
    "ratio": ".reg.mismatch",
    "argmin_mismatch": ".reg.mismatch",
    "correct_bias": ".reg.mismatch",
    "truncate_noise": ".reg.mismatch",
    "nanpad": ".reg.mismatch",
    "aperture_grid": ".reg.apertures",
    "default_aperture_width": ".reg.apertures",
    "aperture_range": ".reg.apertures",
    # fits
    "qfit": ".reg.fit",
    "qbuild": ".reg.fit",
    "mms_to_fit": ".reg.fit",
    "uclamp": ".reg.fit",
    "uisvalid": ".reg.fit",
    # deformations
    "GridDeformation": ".reg.deformation",
    "grid_deformations": ".reg.deformation",
    "compose": ".reg.deformation",
    "regrid": ".reg.deformation",
    "tform_to_deformation": ".reg.deformation",
    "warp": ".reg.warp",
    "warp_to_file": ".reg.warp",
    "medfilt": ".reg.timeseries",
    "tinterpolate": ".reg.timeseries",
    # penalties and optimisation
    "interpolate_mm": ".reg.penalty",
    "data_penalty": ".reg.penalty",
    "AffinePenalty": ".reg.penalty",
    "temporal_penalty": ".reg.penalty",
    "total_penalty": ".reg.penalty",
    "total_penalty_series": ".reg.penalty",
    "initial_deformation": ".reg.optimize",
    "optimize_deformation": ".reg.optimize",
    "fixed_lambda": ".reg.optimize",
    "auto_lambda": ".reg.autolambda",
    "auto_lambda_t": ".reg.autolambda",
    "fit_sigmoid": ".reg.autolambda",
    "optimize_rigid": ".reg.rigid",
    # algorithms and running them
    "Algorithm": ".algorithms.base",
    "ArrayDecl": ".algorithms.base",
    "Apertures": ".algorithms.apertures",
    "register": ".runner",
    "open_series": ".io",
    "open_results": ".store",
    "Client": ".client",
    "JobSpec": ".jobspec",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'blockreg' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
