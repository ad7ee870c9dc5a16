"""The one gate between a request and the file system: a relative path under a root, or a
refusal.

Every path the server reads or serves from a request (a case's file, a pick under
``--media-root``) goes through :func:`resolve_under`: absolute paths, ``..``, hidden names
(temp files, the uploads folder), NUL bytes and symbolic links anywhere on the way are refused,
and what remains must still lie inside the root once resolved.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mrigan.errors import MriganError


class PathRefused(MriganError, PermissionError):
    """A requested path that is outside its root, or could lead outside it."""


def resolve_under(root: Path, rel: str) -> Path:
    """``root / rel`` when ``rel`` is a plain relative path inside ``root`` (which must be
    resolved already); raises :class:`PathRefused` otherwise. The path need not exist."""
    if not rel or "\x00" in rel or "\\" in rel:
        raise PathRefused("refused: an empty path or one with a NUL byte or a backslash")
    pure = PurePosixPath(rel)
    if pure.is_absolute():
        raise PathRefused("refused: absolute paths are not accepted (give a path relative "
                          "to the root)")
    if any(part == ".." for part in pure.parts):
        raise PathRefused("refused: '..' is not accepted in a path")
    if any(part.startswith(".") for part in pure.parts):
        raise PathRefused("refused: hidden names are not served")
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            raise PathRefused("refused: symbolic links are not followed")
    if not current.resolve().is_relative_to(root):
        raise PathRefused("refused: the path leads outside its root")
    return current
