"""Where the packages live; everything else is in pyproject.toml.

Three top-level folders hold the importable packages: ``common/blockreg`` (the library),
``services/blockreg_services`` (the server) and ``migrations/`` (the Alembic scripts, installed as
``blockreg_migrations`` so that an installed package, not only a checkout, can migrate its
database). pyproject.toml's ``packages.find`` cannot rename a folder, hence this file.
"""
from setuptools import find_packages, setup

setup(
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
