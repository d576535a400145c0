"""`blockreg user ...`, the client's token, and `blockreg up --auth/--data-root` (issue 8)."""
from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from blockreg import Client, users
from blockreg.db import make_engine, session_factory
from blockreg_services import cli


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BLOCKREG_HOME", str(home))
    for name in ("BLOCKREG_DATABASE_URL", "BLOCKREG_TOKEN", "BLOCKREG_AUTH",
                 "BLOCKREG_DATA_ROOTS", "BLOCKREG_ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    return home


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def authenticated(home, token):
    engine = make_engine(f"sqlite:///{home / 'blockreg.db'}")
    try:
        with session_factory(engine)() as session:
            user = users.authenticate(session, token)
            return None if user is None else (user.name, user.is_admin)
    finally:
        engine.dispose()


def test_user_add_prints_the_token_last_and_saves_it_owner_only(home, capsys):
    code, out, _ = run(capsys, "user", "add", "ada", "--admin", "--home", str(home))
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert authenticated(home, token) == ("ada", True)
    saved = home / "token"
    assert saved.read_text().strip() == token
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    # the client finds it there; a token given explicitly or in BLOCKREG_TOKEN wins
    assert Client("http://x")._token == token
    assert Client("http://x", token="other")._token == "other"


def test_user_list_rotate_remove(home, capsys):
    first = run(capsys, "user", "add", "bob")[1].strip().splitlines()[-1]
    assert run(capsys, "user", "add", "bob")[0] == 2  # taken
    assert run(capsys, "user", "add", "no/slash")[0] == 2
    code, out, _ = run(capsys, "user", "list")
    assert code == 0 and "bob" in out and first not in out
    second = run(capsys, "user", "rotate", "bob")[1].strip().splitlines()[-1]
    assert authenticated(home, first) is None and authenticated(home, second) == ("bob", False)
    assert run(capsys, "user", "remove", "bob")[0] == 0
    assert authenticated(home, second) is None
    code, _, err = run(capsys, "user", "remove", "bob")
    assert code == 2 and "no user 'bob'" in err


def test_tokens_are_random_and_stored_hashed(home, capsys):
    tokens = {run(capsys, "user", "add", f"u{i}")[1].strip().splitlines()[-1] for i in range(3)}
    assert len(tokens) == 3 and all(len(t) > 40 for t in tokens)
    # the database and its write-ahead log (SQLite in WAL mode)
    db = b"".join(p.read_bytes() for p in home.glob("blockreg.db*"))
    assert not any(t.encode() in db for t in tokens)
    assert all(users.hash_token(t).encode() in db for t in tokens)


def test_client_sends_the_token(home):
    seen = {}

    class Session:
        def request(self, method, url, **kwargs):
            seen.update(kwargs.get("headers") or {})

            class Response:
                status_code = 200

                def json(self):
                    return {"jobs": []}
            return Response()

    Client("http://x", token="brk_abc", session=Session()).jobs()
    assert seen["Authorization"] == "Bearer brk_abc"
    assert "brk_abc" not in repr(Client("http://x", token="brk_abc"))


def test_up_with_auth_and_no_data_root_exits_2_saying_why(home, capsys):
    code, _, err = run(capsys, "up", "--auth", "--home", str(home))
    assert code == 2
    assert "--auth needs at least one --data-root" in err
    # the real command, as a lab admin would type it
    done = subprocess.run([sys.executable, "-c", "from blockreg_services.cli import main; "
                           "raise SystemExit(main())", "up", "--auth"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--data-root" in done.stderr


def test_up_without_auth_serves_loopback_only(home, capsys):
    code, _, err = run(capsys, "up", "--host", "0.0.0.0", "--home", str(home))
    assert code == 2 and "single-user mode" in err and "loopback" in err


def test_up_environment(home, tmp_path, capsys):
    from blockreg import settings
    from blockreg_services.commands.users import up_environment

    args = cli.build_parser().parse_args(["up", "--auth", "--data-root", str(tmp_path)])
    env = up_environment(args, settings.load())
    assert env == {"BLOCKREG_AUTH": "true", "BLOCKREG_DATA_ROOTS": str(tmp_path.resolve())}
    args = cli.build_parser().parse_args(["up"])
    assert up_environment(args, settings.load()) == {"BLOCKREG_AUTH": "false"}
    assert "single-user mode" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["up", "--auth", "--data-root", str(tmp_path / "no")])
    with pytest.raises(cli.CliError, match="is not a folder"):
        up_environment(args, settings.load())
