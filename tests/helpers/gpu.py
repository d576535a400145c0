"""The GPU tests' gate: CuPy with a CUDA device, else a clean skip (CI has no GPU)."""
import pytest


def cupy_or_skip():
    """Return the ``cupy`` module, or skip the test when CuPy or a CUDA device is missing."""
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:                               # no driver, no runtime
        pytest.skip(f"CUDA unavailable: {exc}")
    return cp
