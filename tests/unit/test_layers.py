"""The layer contract (DESIGN.md section 1), so CI fails when a layer reaches the wrong way.

The contracts are import-linter's, in pyproject.toml ``[tool.importlinter]``: ``blockreg.reg`` and
``blockreg.algorithms`` import no Flask, Celery, SQLAlchemy, pydantic or Zarr, directly or through
another module; ``blockreg`` (common) never imports ``blockreg_services``. import-linter reads
import statements, so a lazy import inside a function counts too. What it cannot see, the
lazy ``__getattr__`` of ``blockreg/__init__.py``, is checked by importing for real.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(config: Path, capsys) -> tuple[int, str]:
    importlinter = pytest.importorskip("importlinter.cli")
    code = importlinter.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    return code, capsys.readouterr().out


def test_the_layer_contracts_hold(capsys):
    code, out = lint_imports(ROOT / "pyproject.toml", capsys)
    assert code == 0, out
    assert "2 kept, 0 broken" in out


def test_a_broken_contract_is_reported(tmp_path, capsys):
    # the checker must be able to fail: the registration code does import NumPy
    (tmp_path / "contracts.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["blockreg"]\ninclude_external_packages = true\n'
        '[[tool.importlinter.contracts]]\nname = "no numpy"\ntype = "forbidden"\n'
        'source_modules = ["blockreg.reg"]\nforbidden_modules = ["numpy"]\n')
    code, out = lint_imports(tmp_path / "contracts.toml", capsys)
    assert code != 0 and "BROKEN" in out


def test_importing_blockreg_and_its_user_api_loads_no_server_library():
    from helpers.imports import loaded_after

    assert loaded_after("import blockreg, blockreg.settings\n"
                        "blockreg.Apertures; blockreg.register; blockreg.Client; blockreg.JobSpec"
                        ) == []
