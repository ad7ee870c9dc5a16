"""How the command line shows the library's ``logging`` records: the one place it is set up.

Library code never prints: it logs to ``logging.getLogger(__name__)`` (or to a ``log``
callback its caller passes, which defaults to that logger). While a subcommand runs,
:func:`console_logging` sends the records of the project's packages (``mrigan``, ``detectors``,
``datasets_builders``) to the console as plain lines - progress (INFO) on stdout, warnings and
errors on stderr - at the level ``-v`` / ``-q`` ask for, and takes the handler away again
afterwards (sweeps call ``main(argv)`` many times in one process).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

#: the loggers of the project's packages (every module logs under one of them)
PACKAGES = ("mrigan", "detectors", "datasets_builders")


class ConsoleHandler(logging.Handler):
    """Plain lines: below WARNING to the current ``sys.stdout`` (``sys.stderr`` with
    ``progress_to_stderr``), the rest to ``sys.stderr`` (looked up per record, so a redirected or
    captured stream is honoured)."""

    progress_to_stderr = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = (sys.stderr if record.levelno >= logging.WARNING or self.progress_to_stderr
                      else sys.stdout)
            stream.write(self.format(record) + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed stream: the record is lost, the job goes on
            self.handleError(record)


def level_for(verbose: int = 0, quiet: int = 0) -> int:
    """INFO by default; ``-v`` DEBUG; ``-q`` WARNING (progress hidden), ``-qq`` ERROR."""
    return {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        min(verbose, 1) - min(quiet, 2), logging.DEBUG)


@contextlib.contextmanager
def console_logging(level: int = logging.INFO, fmt: str = "%(message)s",
                    datefmt: str | None = None) -> Iterator[ConsoleHandler]:
    """The project's records at ``level`` and above on the console while the block runs."""
    handler = ConsoleHandler()
    handler.setFormatter(logging.Formatter(fmt, datefmt))
    loggers = [logging.getLogger(name) for name in PACKAGES]
    before = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, old in before:
            lg.removeHandler(handler)
            lg.setLevel(old)


def set_format(fmt: str, datefmt: str | None = None, *, progress_to_stderr: bool = False,
               level: int | None = None) -> None:
    """Change the console lines of the running subcommand: their format, whether progress goes
    to stderr (``train-gan``'s timed training log does, beside its stdout summary) and, when
    given, a stricter level (``train-gan``'s other ranks: warnings only)."""
    for name in PACKAGES:
        lg = logging.getLogger(name)
        if level is not None and level > lg.getEffectiveLevel():
            lg.setLevel(level)
        for h in lg.handlers:
            if isinstance(h, ConsoleHandler):
                h.setFormatter(logging.Formatter(fmt, datefmt))
                h.progress_to_stderr = progress_to_stderr


__all__ = ["PACKAGES", "ConsoleHandler", "console_logging", "level_for", "set_format"]
