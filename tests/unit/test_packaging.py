"""What the distribution ships and how the README's two commands are run.

A fresh virtualenv with ``pip install ".[server]"`` (not editable) running ``blockreg demo``, and
one with ``pip install .`` importing blockreg without the server libraries, are checked by hand
(docs/internals.md, "Packaging"); building a wheel here would need the network for the build
backend. These checks are the cheap part of the same promises.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith("#")]
    assert test_command in ci
    assert 'pip install ".[server]" && blockreg demo' in commands


def test_migrations_are_found_through_the_installed_package():
    from alembic.script import ScriptDirectory

    import blockreg_migrations
    from blockreg.db.migrate import alembic_config, migrations_dir

    folder = migrations_dir()
    assert folder == Path(blockreg_migrations.__file__).parent
    assert (folder / "env.py").is_file()
    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()


def test_package_data_names_only_files_that_exist():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = {"blockreg": "common/blockreg", "blockreg_services": "services/blockreg_services",
               "blockreg_migrations": "migrations"}
    for package, patterns in pyproject["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list((ROOT / folders[package]).glob(pattern)), f"{package}: {pattern}"
