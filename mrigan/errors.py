"""The one user-error base class.

Every problem caused by what a user gave us (a file, a config value, a weights file, a
command-line argument) raises a subclass of :class:`MriganError`; the command line catches this
base once (``mrigan.app.cli.main``), prints one line naming the file and the problem, and exits
with code 2. Anything else is a bug and keeps its traceback.

Subclasses keep the builtin base they had (``ValueError`` / ``RuntimeError``) so callers that
catch those keep working.
"""

from __future__ import annotations

import os


class MriganError(Exception):
    """A user error: bad input, bad config, bad weights. ``path`` names the file when known."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)

    def one_line(self) -> str:
        """The message on one line (what the CLI prints)."""
        return " ".join(str(self).split())


class InputValueError(MriganError, ValueError):
    """Input values a computation cannot give a meaningful answer for: NaN or infinite pixels,
    integer and floating images mixed in one call (their scales differ: 0..255 vs 0..1)."""


class InputTypeError(MriganError, TypeError):
    """An input of a type a computation does not take (an object array, a list of strings
    where images are expected)."""
