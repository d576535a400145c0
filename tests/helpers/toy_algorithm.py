"""Registers the toy algorithm ``"mean-shift"`` on import, for processes that only read settings.

The integration tests' coordinator and Celery workers are separate processes: they learn about a
test algorithm the way a lab's plugin would, through ``BLOCKREG_ALGORITHM_MODULES=
helpers.toy_algorithm`` (with the tests folder on ``PYTHONPATH``; see tests/integration/conftest.py).
"""
from blockreg.registry import register_algorithm

from helpers.service_fakes import MEAN_SHIFT

register_algorithm(MEAN_SHIFT)
