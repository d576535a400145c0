"""The registration algorithms: pure functions of arrays (NumPy or CuPy), no I/O, no server.

Every public name of the modules below is available here, imported on first use (so that
``import blockreg.reg`` costs nothing until a function is needed)::

    from blockreg.reg import mms_to_fit, interpolate_mm, AffinePenalty, fixed_lambda

The user-facing subset is also at the top level (``blockreg.warp``, ``blockreg.mismatch``, ...).
Two functions share their module's name, so here they are reached through the module:
``blockreg.reg.warp.warp`` and ``blockreg.reg.mismatch.mismatch`` (``blockreg.warp`` and
``blockreg.mismatch`` at the top level).
"""
from __future__ import annotations

import importlib

_MODULES = {
    "preprocess": ("PreprocessSNF", "clip_bright", "temporal_median"),
    "filters": ("highpass", "lowpass"),
    "mismatch": ("mismatch_apertures", "MismatchPlan", "mismatch_zeroshift", "register_translate",
                 "ratio", "argmin_mismatch", "correct_bias", "truncate_noise", "nanpad"),
    "apertures": ("aperture_grid", "default_aperture_width", "aperture_range", "aperture_content"),
    "fit": ("qfit", "qbuild", "mms_to_fit", "clamp_shifts", "uclamp", "uisvalid"),
    "deformation": ("GridDeformation", "grid_deformations", "compose", "regrid",
                    "tform_to_deformation", "nodes_for_shape", "node_grid"),
    "warp": ("warp_to_file", "edge_tolerance"),
    "timeseries": ("medfilt", "tinterpolate"),
    "penalty": ("interpolate_mm", "data_penalty", "AffinePenalty", "temporal_penalty",
                "total_penalty", "total_penalty_series", "maxshift_of"),
    "optimize": ("initial_deformation", "optimize_deformation", "fixed_lambda",
                 "single_threaded_blas"),
    "autolambda": ("auto_lambda", "auto_lambda_t", "fit_sigmoid"),
    "series": ("optimize_series", "optimize_series_windowed", "plan_windows", "Window",
               "series_penalty", "solve_window", "stitch_windows", "window_weights",
               "consensus_lambda"),
    "rigid": ("optimize_rigid",),
    "_common": ("working_dtype", "per_axis", "check_maxshift", "check_normalization",
                "NORMALIZATIONS", "lambda_count"),
}

# public name -> module that defines it (relative to this package)
_EXPORTS = {name: f".{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'blockreg.reg' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(__all__) | set(_MODULES))
