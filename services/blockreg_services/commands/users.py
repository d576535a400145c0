"""``blockreg user add|list|remove|rotate`` and the access options of ``blockreg up``.

The user commands talk to the deployment's database directly (its settings: ``BLOCKREG_HOME``,
``BLOCKREG_DATABASE_URL``, or ``--home`` / ``--database-url``), so they work whether or not the
server runs; they migrate the schema first (as ``blockreg db upgrade`` would). ``user add`` and
``user rotate`` print the token on the last line of their output, once; the database keeps only
its hash. With ``--home`` naming the embedded stack's folder, the token is also written to
``HOME/token`` (mode 0600), where the CLI and :class:`blockreg.Client` find it.

``blockreg up --auth --data-root DIR`` (repeatable) turns on authentication; ``--auth`` without a
data root is refused (exit 2). Without ``--auth`` the stack is in single-user mode and listens on
loopback only.
"""
from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from blockreg import settings

__all__ = ["add_parsers", "add_up_options", "up_environment", "write_token_file"]


def _error(*lines):
    from ..cli import CliError

    return CliError(*lines)


# -- the database of the deployment ------------------------------------------------------------
def _sessions(args):
    """A session factory on the deployment's database, migrated to the current schema."""
    from ..cli import require_server_extra

    require_server_extra()
    from blockreg.db import make_engine, session_factory
    from blockreg.db.migrate import migrate

    url = args.database_url or _settings_for(args).database_url
    try:
        migrate(url)
    except Exception as exc:  # noqa: BLE001 - unreachable server, bad URL, refused login...
        from ..cli import _safe_url

        raise _error(f"database {_safe_url(url)}: {exc}") from None
    return session_factory(make_engine(url))


def _settings_for(args) -> settings.Settings:
    if args.home:  # the embedded stack's own database in that folder, as `blockreg up` uses
        return settings.Settings(home=Path(args.home).expanduser().resolve())
    return settings.load()


def write_token_file(home, token: str) -> Path:
    """Write ``home/token`` readable by its owner only (created 0600, never wider)."""
    from blockreg.client import TOKEN_FILE

    path = Path(home).expanduser() / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_CREAT with 0600 and a chmod for a file that was there before: no moment of wider access
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    return path


def _save_token(args, token: str) -> None:
    if args.home:
        path = write_token_file(args.home, token)
        print(f"token saved in {path} (readable by you only)")


# -- user commands -----------------------------------------------------------------------------
def _in_database(args, change):
    """``change(session)`` on the deployment's database; a UserError (an unknown or existing
    name, the last admin) becomes a usage error."""
    from blockreg.users import UserError

    with _sessions(args)() as session:
        try:
            return change(session)
        except UserError as exc:
            raise _error(str(exc)) from None


def _hand_out(args, token: str) -> int:
    """Save the new token where ``--home`` says, and print it on the last line, once."""
    _save_token(args, token)
    print(token)
    return 0


def cmd_user_add(args) -> int:
    from blockreg.users import add_user

    def add(session):
        user, token = add_user(session, args.name, admin=args.admin)
        return ("admin" if user.is_admin else "user"), token

    kind, token = _in_database(args, add)
    print(f"{kind} {args.name} created; the token below is shown once")
    return _hand_out(args, token)


def cmd_user_rotate(args) -> int:
    from blockreg.users import rotate_token

    token = _in_database(args, lambda session: rotate_token(session, args.name))
    print(f"new token of {args.name}; the old one no longer works")
    return _hand_out(args, token)


def cmd_user_remove(args) -> int:
    from blockreg.users import remove_user

    _in_database(args, lambda session: remove_user(session, args.name))
    print(f"user {args.name} removed (their jobs stay, visible to admins)")
    return 0


def cmd_user_list(args) -> int:
    from blockreg.users import list_users

    with _sessions(args)() as session:
        rows = [(u.name, "admin" if u.is_admin else "user", u.created_at)
                for u in list_users(session)]
    print(f"{'name':<24}  {'role':<5}  created")
    for name, role, created in rows:
        print(f"{name:<24}  {role:<5}  {created:%Y-%m-%d %H:%M}")
    return 0


def add_parsers(subparsers) -> None:
    """Add ``blockreg user`` and its subcommands."""
    user = subparsers.add_parser("user", help="manage the users of a server with --auth")
    sub = user.add_subparsers(dest="user_command", required=True, metavar="USER_COMMAND")

    def database_options(p):
        p.add_argument("--home", help="the embedded stack's folder (default: $BLOCKREG_HOME or "
                                      "~/.blockreg); `add` and `rotate` also save the token there")
        p.add_argument("--database-url", metavar="URL",
                       help="the deployment's database (default: $BLOCKREG_DATABASE_URL, else "
                            "the SQLite file in the home)")

    add = sub.add_parser("add", help="create a user; prints the token on the last line")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="sees and cancels every job")
    database_options(add)
    add.set_defaults(func=cmd_user_add)
    rotate = sub.add_parser("rotate", help="give a user a new token (the old one stops working)")
    rotate.add_argument("name")
    database_options(rotate)
    rotate.set_defaults(func=cmd_user_rotate)
    remove = sub.add_parser("remove", help="remove a user (their jobs stay)")
    remove.add_argument("name")
    database_options(remove)
    remove.set_defaults(func=cmd_user_remove)
    listing = sub.add_parser("list", help="list the users")
    database_options(listing)
    listing.set_defaults(func=cmd_user_list)


# -- blockreg up --auth --data-root ------------------------------------------------------------
def add_up_options(up, defaults: settings.Settings) -> None:
    """``--auth`` and ``--data-root`` of ``blockreg up``."""
    up.add_argument("--auth", action="store_true", default=defaults.auth,
                    help="require API tokens (users: `blockreg user add`); needs --data-root")
    up.add_argument("--data-root", action="append", metavar="DIR", default=None,
                    help="a folder inputs and outputs must lie in (repeatable; default "
                         "$BLOCKREG_DATA_ROOTS)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def up_environment(args, defaults: settings.Settings) -> dict[str, str]:
    """The children's access settings for ``blockreg up``; CliError (exit 2) when refused.

    Prints the mode the stack runs in.
    """
    roots = [Path(r).expanduser().resolve() for r in (args.data_root or [])]
    if not roots and defaults.data_roots:
        roots = [Path(r).expanduser().resolve() for r in defaults.data_roots]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise _error(f"--data-root: {', '.join(missing)} is not a folder")
    if args.auth and not roots:
        raise _error("--auth needs at least one --data-root DIR (or BLOCKREG_DATA_ROOTS): "
                     "without one, every user could read and write any file this server can")
    if not args.auth and not _loopback(args.host):
        raise _error(f"--host {args.host}: without --auth the server is in single-user mode and "
                     "listens on loopback only; add --auth (and users) to serve a network")
    env = {"BLOCKREG_AUTH": "true" if args.auth else "false"}
    if roots:
        env["BLOCKREG_DATA_ROOTS"] = os.pathsep.join(str(r) for r in roots)
    if args.auth:
        print(f"authentication on: tokens required; data roots {', '.join(map(str, roots))}",
              flush=True)
    else:
        print("single-user mode: no authentication, listening on loopback only; anyone with "
              "an account on this machine can use the API (`--auth` for a shared server)",
              file=sys.stderr, flush=True)
    return env
