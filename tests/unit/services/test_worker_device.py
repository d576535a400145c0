"""A GPU worker's parent process never touches CUDA: the device is set up in the pool process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]


def test_importing_the_worker_app_leaves_cupy_alone():
    # the Celery parent imports this package and then forks its pool: with a GPU worker's
    # settings, neither CuPy nor the stand-in may be imported (a CUDA context does not survive
    # a fork); orchestrate.device.setup runs in each pool process (worker_process_init)
    env = dict(os.environ, BLOCKREG_WORKER_DEVICE="gpu",
               BLOCKREG_TEST_ARRAY_MODULE="helpers.strict_cupy",
               BLOCKREG_BROKER_URL="redis://127.0.0.1:1/0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    code = ("import sys, blockreg_services.worker\n"
            "assert 'cupy' not in sys.modules, 'cupy imported before the fork'\n"
            "from blockreg.orchestrate import device\n"
            "assert device.describe() == 'cpu'\n"
            "print(device.setup('gpu', 'helpers.strict_cupy'))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "gpu:0 strict-cupy stand-in"


def test_a_bad_worker_device_names_the_setting():
    import pytest

    from blockreg import settings

    with pytest.raises(settings.SettingError, match="BLOCKREG_WORKER_DEVICE|worker_device"):
        settings.load({"BLOCKREG_WORKER_DEVICE": "tpu"})
    assert settings.load({"BLOCKREG_WORKER_DEVICE": "GPU:1"}).worker_device == "gpu:1"
