"""Where the packages live; everything else is in pyproject.toml.

Three top-level folders hold the importable packages: ``common/blockreg`` (the library),
``services/blockreg_services`` (the server) and ``migrations/`` (the Alembic scripts, installed as
``blockreg_migrations`` so that an installed package, not only a checkout, can migrate its
database). pyproject.toml's ``packages.find`` cannot rename a folder, hence this file.
"""
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class FreshBuildPy(build_py):
    """Copy the packages into an empty build folder.

    setuptools reuses ``build/lib`` between builds, so a module deleted or moved in the tree
    would otherwise still ship in the next wheel.
    """

    def run(self):
        shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()


setup(
    cmdclass={"build_py": FreshBuildPy},
    package_dir={
        "blockreg": "common/blockreg",
        "blockreg_services": "services/blockreg_services",
        "blockreg_migrations": "migrations",
    },
    packages=[
        *find_packages("common", include=["blockreg", "blockreg.*"]),
        *find_packages("services", include=["blockreg_services", "blockreg_services.*"]),
        "blockreg_migrations",
        *(f"blockreg_migrations.{name}" for name in find_packages("migrations")),
    ],
)
