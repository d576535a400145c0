"""Authentication and ownership on ``/api/v1``: a Bearer token names the user, who sees only their
own jobs; an admin sees every job.

With the ``AUTH`` configuration key off (single-user mode, ``blockreg up`` without ``--auth``)
nobody is asked for a token and every job is visible: the server listens on loopback and its one
user is whoever started it. With ``AUTH`` on, every route of the ``api`` blueprint except health
answers 401 without a valid ``Authorization: Bearer TOKEN`` (other blueprints under ``/api/v1``
run the same check, see ``browse.guard_like_api``). Another user's job is answered like a job that
does not exist (404), so ids reveal nothing. Tokens are never logged: only the user's name is.
"""
from __future__ import annotations

from flask import current_app, g, request

__all__ = ["authenticate_request", "current_user", "can_see", "owner_filter", "owner_id",
           "EXEMPT_ENDPOINTS"]

# reachable without a token: load balancers and `blockreg up` poll health
EXEMPT_ENDPOINTS = {"api.health"}


def auth_enabled() -> bool:
    return bool(current_app.config.get("AUTH"))


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate_request():
    """``before_request`` of the api blueprint: sets ``g.user`` or answers 401."""
    from blockreg.users import authenticate

    from .api import db, error_response

    g.user = None
    if not auth_enabled() or request.endpoint in EXEMPT_ENDPOINTS:
        return None
    user = authenticate(db(), _bearer_token())
    if user is None:
        response = error_response(401, "authentication required: send 'Authorization: Bearer "
                                        "TOKEN' (a token comes from 'blockreg user add')")
        response.headers["WWW-Authenticate"] = 'Bearer realm="blockreg"'
        return response
    g.user = user
    return None


def current_user():
    """The authenticated user of this request (None in single-user mode)."""
    return g.get("user")


def can_see(job) -> bool:
    """Whether this request's user may read and cancel ``job``."""
    if not auth_enabled():
        return True
    user = current_user()
    return user is not None and (user.is_admin or job.owner_id == user.id)


def owner_filter() -> int | None:
    """The owner id a job listing is restricted to (None: every job; admin or single-user)."""
    user = current_user()
    if not auth_enabled():
        return None
    if user is None:  # not reached (401 first); never "everything"
        return -1
    return None if user.is_admin else user.id


def owner_id() -> int | None:
    """The owner recorded on a job submitted by this request."""
    user = current_user()
    return None if user is None else user.id
