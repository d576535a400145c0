"""Data roots: the folders a server's jobs may read and write, and the checks that keep them there.

A path is checked once it is *resolved* (every symlink followed, ``..`` removed): it must lie in
one of the roots, also resolved. The submit stores that resolved path, and whoever opens it later
(a worker, hours after the submit) first checks that it still resolves inside a root, right
before opening: a symlink put in its place after the submit, pointing out of the roots, is
refused instead of followed. (What remains is the instant between that check and the open; the
readers open files by name.) A directory input (a Zarr store) is walked for links that leave the
roots too, and the other file of an Imagine recording (header or ``.cam``) is checked as well.

A refusal says the same thing whether the outside file exists, is missing or is unreadable
(:data:`REFUSED`), so probing paths through submits reveals nothing about the server's disks.

Without roots (``None``, the single-user mode) every check passes: the user is the server's own.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ParameterError

__all__ = ["REFUSED", "resolve_roots", "configured_roots", "inside", "resolve_inside",
           "links_leaving", "leads_out", "check_still_inside"]

# the one refusal for an input or output outside the roots, a missing or unreadable input
REFUSED = "not inside a data root or not readable"


def resolve_roots(roots) -> list[Path] | None:
    """The roots, resolved (None stays None: no restriction)."""
    if roots is None:
        return None
    return [Path(os.path.realpath(Path(r).expanduser())) for r in roots if str(r)]


def configured_roots() -> list[Path] | None:
    """The ``data_roots`` setting, resolved."""
    from . import settings

    return resolve_roots(settings.load().data_roots)


def results_folder() -> Path:
    """Where jobs without ``output.path`` write (``$BLOCKREG_DATA_DIR/results``), resolved."""
    from . import settings

    return Path(os.path.realpath(Path(settings.load().data_dir).expanduser() / "results"))


def inside(path: Path, roots) -> bool:
    """``path`` (already resolved) is one of ``roots`` or below one."""
    return any(path == root or root in path.parents for root in roots)


def resolve_inside(value, roots) -> Path | None:
    """``value`` resolved, if it lies inside ``roots`` (resolved already); else None.

    With ``roots`` None every path is accepted and returned resolved.
    """
    try:
        path = Path(os.path.realpath(Path(os.fspath(value)).expanduser()))
    except (OSError, ValueError, RuntimeError):
        return None
    if roots is not None and not inside(path, roots):
        return None
    return path


def links_leaving(folder: Path, roots, *, limit: int = 1_000_000) -> bool:
    """True when a symlink somewhere below ``folder`` resolves outside ``roots``.

    Only links are resolved, so the walk costs one ``lstat`` per entry (``os.walk`` does not
    follow links into folders). ``limit`` bounds the entries looked at; past it the answer is
    True (refuse rather than assume).
    """
    if roots is None:
        return False
    seen = 0
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            seen += 1
            if seen > limit:
                return True
            entry = os.path.join(top, name)
            if os.path.islink(entry) and not inside(Path(os.path.realpath(entry)), roots):
                return True
    return False


# a file read together with the one a spec names: an Imagine recording is a header and its pixels
_COMPANION_SUFFIXES = {".imagine": ".cam", ".cam": ".imagine"}


def _imagine_data_file(header: Path) -> Path | None:
    """The pixel file an Imagine header names (by name only, beside the header), if any."""
    from .io.imagine import parse_header

    try:
        named = str(parse_header(header).get("image data file", ""))
    except (ParameterError, OSError):
        return None
    name = named.replace("\\", "/").rsplit("/", 1)[-1]
    return header.parent / name if name else None


def leads_out(path: Path, roots) -> bool:
    """True when reading ``path`` (resolved, inside ``roots``) would read outside ``roots``.

    A folder (a Zarr store) leads out through a link below it (:func:`links_leaving`); an Imagine
    recording through its other file (the ``.cam`` of a header, the header of a ``.cam``, or the
    pixel file the header names), which the reader opens beside the named one.
    """
    if roots is None:
        return False
    if path.is_dir():
        return links_leaving(path, roots)
    other = _COMPANION_SUFFIXES.get(path.suffix.lower())
    if other is None:
        return False
    header = path if other == ".cam" else path.with_suffix(".imagine")
    read = [path.with_suffix(other)]
    if os.path.lexists(header) and inside(Path(os.path.realpath(header)), roots):
        read.append(_imagine_data_file(header))  # parsed only once known to be inside
    return any(p is not None and os.path.lexists(p)
               and not inside(Path(os.path.realpath(p)), roots) for p in read)


def check_still_inside(value, field: str, roots=None) -> None:
    """Right before opening a path: it must still resolve inside the roots.

    The submit stored the resolved path; a link put in its place since then (or in a folder
    above it) that leads out of the roots is refused here, in the process that opens it.

    Parameters
    ----------
    value : path-like
        A path the submit resolved and stored.
    field : str
        Named in the error (``input.path``, ``output.path``).
    roots : sequence of path-like, optional
        Default: the ``data_roots`` setting. No roots: nothing is checked.

    Raises
    ------
    blockreg.errors.ParameterError
        The path (or a link inside the folder it names) now leads out of the roots.
    """
    roots = configured_roots() if roots is None else resolve_roots(roots)
    if roots is None:
        return
    if field == "output.path":  # the server's own results folder holds the default outputs
        roots = roots + [results_folder()]
    now = resolve_inside(value, roots)
    if now is None or leads_out(now, roots):
        raise ParameterError(field, f"{value}: {REFUSED} (checked again before opening)")
