"""Users and their API tokens: create, list, remove, rotate, and authenticate a token.

A token is 32 random bytes from :mod:`secrets` (URL-safe text, prefixed ``brk_`` so it is easy
to spot in a config file). Only its SHA-256 is stored: a token has 256 bits of entropy, so a fast
hash is enough (no password stretching needed), and a stolen database gives no usable token.
Authentication looks the hash up and compares it again with :func:`hmac.compare_digest`. Tokens
are returned once, to the caller that made them, and never logged.

Example
-------
::

    from blockreg import users
    user, token = users.add_user(session, "ada")      # token shown once, stored hashed
    assert users.authenticate(session, token) is user
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .db.models import User

__all__ = ["UserError", "new_token", "hash_token", "add_user", "list_users", "remove_user",
           "rotate_token", "authenticate", "TOKEN_PREFIX"]

TOKEN_PREFIX = "brk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class UserError(ValueError):
    """A user command that cannot be done (bad or taken name, unknown user)."""


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what the database stores."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"name: {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def add_user(session, name: str, *, admin: bool = False) -> tuple[User, str]:
    """Create user ``name``; return the user and their token (shown once, stored hashed).

    Raises
    ------
    UserError
        The name is malformed or taken.
    """
    _check_name(name)
    token = new_token()
    user = User(name=name, token_hash=hash_token(token), is_admin=bool(admin),
                created_at=datetime.now(timezone.utc))
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise UserError(f"name: a user {name!r} already exists") from None
    return user, token


def list_users(session) -> list[User]:
    """Every user, by name."""
    return list(session.scalars(select(User).order_by(User.name)))


def _get(session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UserError(f"name: no user {name!r}")
    return user


def remove_user(session, name: str) -> None:
    """Remove user ``name``; their token stops working and their jobs stay, owned by nobody
    (only an admin sees them)."""
    from sqlalchemy import update

    from .db.models import Job

    user = _get(session, name)
    # explicit, not left to ON DELETE SET NULL: SQLite enforces foreign keys only when enabled
    session.execute(update(Job).where(Job.owner_id == user.id).values(owner_id=None))
    session.delete(user)
    session.commit()


def rotate_token(session, name: str) -> str:
    """Give user ``name`` a new token (the old one stops working at once); return it."""
    user = _get(session, name)
    token = new_token()
    user.token_hash = hash_token(token)
    session.commit()
    return token


def authenticate(session, token: str | None) -> User | None:
    """The user whose token this is, or None (no token, unknown or malformed token)."""
    if not token or not isinstance(token, str) or len(token) > 512:
        return None
    digest = hash_token(token)
    user = session.scalar(select(User).where(User.token_hash == digest))
    # the lookup is by the hash's value; compare again in constant time so nothing about a
    # stored hash can be learnt from timing
    if user is None or not hmac.compare_digest(user.token_hash, digest):
        return None
    return user
