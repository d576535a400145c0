"""blockreg.settings: the one place of every setting, its default and its environment variable."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from blockreg import settings
from blockreg.settings import Settings, SettingError, env_name

ROOT = Path(__file__).resolve().parents[2]
CODE = [*(ROOT / "common").rglob("*.py"), *(ROOT / "services").rglob("*.py"),
        *(ROOT / "migrations").rglob("*.py")]
SETTINGS_PY = ROOT / "common" / "blockreg" / "settings.py"


def test_defaults_and_what_derives_from_home():
    s = settings.load({"BLOCKREG_HOME": "/srv/br"})
    assert s.home == Path("/srv/br")
    assert s.database_url == "sqlite:////srv/br/blockreg.db"
    assert s.data_dir == Path("/srv/br")
    assert s.port == 8750 and s.server is None and s.server_url == "http://127.0.0.1:8750"
    assert s.allowed_roots is None and s.fft_workers is None


def test_every_field_reads_its_prefixed_variable():
    env = {"BLOCKREG_DATABASE_URL": "postgresql+psycopg://x@db/b", "BLOCKREG_PORT": "9000",
           "BLOCKREG_ALLOWED_ROOTS": "/a:/b", "BLOCKREG_FFT_WORKERS": "1",
           "BLOCKREG_DISPATCH_INTERVAL_S": "0.5", "BLOCKREG_SERVER": "http://lab:1/"}
    s = settings.load(env)
    assert s.database_url == "postgresql+psycopg://x@db/b"
    assert (s.port, s.fft_workers, s.dispatch_interval_s) == (9000, 1, 0.5)
    assert s.allowed_roots == (Path("/a"), Path("/b"))
    assert s.server_url == "http://lab:1"
    assert settings.get("fft_workers", env) == 1 and settings.get("fft_workers", {}) is None
    # an empty variable is unset
    assert settings.load({"BLOCKREG_PORT": "", "BLOCKREG_ALLOWED_ROOTS": ":"}).allowed_roots is None
    # overrides by field name win over the environment
    assert settings.load(env, port=1234).port == 1234


@pytest.mark.parametrize("variable, text, problem", [
    ("BLOCKREG_PORT", "http", "not an integer"),
    ("BLOCKREG_TASK_TIME_LIMIT_S", "soon", "not a number"),
    ("BLOCKREG_MAX_BATCHES_PER_JOB", "0", "at least 1"),
    ("BLOCKREG_FFT_WORKERS", "0", "at least 1"),
])
def test_a_bad_variable_is_named(variable, text, problem):
    with pytest.raises(SettingError, match=f"{variable}: .*{problem}"):
        settings.load({variable: text})
    name = variable[len("BLOCKREG_"):].lower()
    with pytest.raises(ValueError, match=variable):
        settings.get(name, {variable: text})


def test_the_leases_follow_the_task_time_limit():
    from blockreg.celery_app import make_celery

    for limit in (600.0, 7200.0, 86400.0):
        s = settings.load({"BLOCKREG_TASK_TIME_LIMIT_S": str(limit)})
        assert s.task_soft_time_limit_s < limit < s.running_lease_s < s.visibility_timeout_s
        conf = make_celery("redis://localhost:1/0", settings=s).conf
        assert conf.task_time_limit == limit
        assert conf.broker_transport_options["visibility_timeout"] == s.visibility_timeout_s


def test_deployment_doc_lists_every_setting_from_this_module():
    doc = (ROOT / "docs" / "deployment.md").read_text()
    table = settings.settings_table()
    assert table in doc, "regenerate the table in docs/deployment.md: python -m blockreg.settings"
    for name in Settings.__dataclass_fields__:
        assert f"`{env_name(name)}`" in doc


def _environ_reads(tree) -> list[str]:
    """``BLOCKREG_*`` names read through os.environ / os.getenv in a module."""
    found = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "getenv", "pop", "setdefault") and node.args:
                owner = ast.unparse(node.func.value)
                if owner.endswith("environ") or node.func.attr == "getenv":
                    target = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            target = node.slice
        if isinstance(target, ast.Constant) and str(target.value).startswith("BLOCKREG_"):
            found.append(target.value)
    return found


def test_no_module_but_settings_reads_a_blockreg_variable():
    offenders = {str(path.relative_to(ROOT)): reads for path in CODE if path != SETTINGS_PY
                 for reads in [_environ_reads(ast.parse(path.read_text()))] if reads}
    assert offenders == {}


def test_the_environ_check_can_fail():
    tree = ast.parse("import os\nos.environ.get('BLOCKREG_X')\nos.environ['BLOCKREG_Y']\n"
                     "os.getenv('BLOCKREG_Z')\nos.environ.get('HOME')\n")
    assert sorted(_environ_reads(tree)) == ["BLOCKREG_X", "BLOCKREG_Y", "BLOCKREG_Z"]


def test_the_default_port_is_written_once():
    literal = re.compile(r"(?<![\d.])8750(?![\d.])")
    places = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, int) \
                    and literal.fullmatch(str(node.value)):
                places.append(str(path.relative_to(ROOT)))
    assert places == [str(SETTINGS_PY.relative_to(ROOT))]


def test_the_settings_module_imports_only_the_standard_library():
    tree = ast.parse(SETTINGS_PY.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    import sys

    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
